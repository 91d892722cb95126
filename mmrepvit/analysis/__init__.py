# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What ``tools/analysis_tools/`` computes, as functions the tools (and
``tools/demo.py``) call:

- :mod:`.builders`: the models analysed (the paper's ImageNet classifier for
  a bare arch, detectors and segmentors from configs, their ResNet-50 twins)
  and example inputs for them;
- :mod:`.complexity`: parameters and multiply-accumulates with MMEngine's
  complexity analysis (``get_flops.py``);
- :mod:`.latency`: latency of each model in each *form* (training, deploy,
  deploy + channels_last, ...) with ``torch.utils.benchmark``, the CPU's peak
  rate, and the training-step breakdown (``benchmark.py``);
- :mod:`.logs`: MMEngine and MMCV 1.x training logs, curves and summaries
  (``analyze_logs.py``).

``import mmrepvit`` does not import this package; each module imports mmdet,
mmseg or matplotlib only when a function needs them.
"""
