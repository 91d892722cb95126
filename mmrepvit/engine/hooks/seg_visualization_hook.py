# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SegTestVisualizationHook(Hook):
    """mmseg's ``SegVisualizationHook``, for tests without training data.

    What ``tools/test.py --show/--show-dir`` uses for MMSegmentation configs,
    with the same arguments, names and files as mmseg's hook. mmseg 1.2's
    hook passes ``runner.iter`` as the step, and reading it builds the train
    loop, hence the training dataloader: a test run failed with
    FileNotFoundError where the training images are not there. Here the step
    is 0, which ``runner.iter`` is in a test-only run.

    Args:
        draw (bool): Whether to draw. Defaults to ``False``.
        interval (int): Draw every ``interval``-th image. Defaults to ``50``.
        show (bool): Show each drawn image in a window (and store nothing).
            Defaults to ``False``.
        wait_time (float): Seconds each image is shown. Defaults to ``0.``.
        backend_args (dict, optional): Arguments of the file backend that
            reads the images. Defaults to ``None``.
    """

    def __init__(self, draw=False, interval=50, show=False, wait_time=0.,
                 backend_args=None):
        from mmengine.visualization import Visualizer
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}.')
        self._visualizer = Visualizer.get_current_instance()
        self.draw = draw
        self.interval = interval
        self.show = show
        self.wait_time = wait_time
        self.backend_args = backend_args
        self._count = 0
        if show:   # shown only, as mmseg's hook does: nothing is stored
            self._visualizer._vis_backends = {}

    def before_test(self, runner) -> None:
        self._count = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        if not self.draw:
            return
        import mmcv
        from mmengine.fileio import get
        for sample in outputs:
            self._count += 1
            if self._count % self.interval:
                continue
            image = mmcv.imfrombytes(
                get(sample.img_path, backend_args=self.backend_args),
                channel_order='rgb')
            self._visualizer.add_datasample(
                f'test_{osp.basename(sample.img_path)}', image,
                data_sample=sample, show=self.show,
                wait_time=self.wait_time, step=0)
