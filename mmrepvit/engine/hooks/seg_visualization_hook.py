# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import os.path as osp

import mmcv
from mmengine.fileio import get
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.visualization import Visualizer


@HOOKS.register_module()
class SegTestVisualizationHook(Hook):
    """mmseg's ``SegVisualizationHook``, for tests without training data.

    Same arguments and files, but step 0 (``runner.iter`` in a test-only run):
    mmseg 1.2's hook reads ``runner.iter``, which builds the train dataloader.

    Args:
        draw (bool): Whether to draw. Defaults to ``False``.
        interval (int): Draw every ``interval``-th image. Defaults to ``50``.
        show (bool): Show each drawn image in a window, store nothing.
            Defaults to ``False``.
        wait_time (float): Seconds each image is shown. Defaults to ``0.``.
        backend_args (dict, optional): File backend arguments to read the
            images. Defaults to ``None``.
    """

    def __init__(self, draw=False, interval=50, show=False, wait_time=0.,
                 backend_args=None):
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}.')
        self._visualizer = Visualizer.get_current_instance()
        self.draw, self.interval, self.show = draw, interval, show
        self.wait_time, self.backend_args = wait_time, backend_args
        self._count = 0
        if show:
            self._visualizer._vis_backends = {}

    def before_test(self, runner) -> None:
        self._count = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        for sample in outputs if self.draw else ():
            self._count += 1
            if self._count % self.interval == 0:
                image = mmcv.imfrombytes(get(
                    sample.img_path, backend_args=self.backend_args),
                    channel_order='rgb')
                self._visualizer.add_datasample(
                    f'test_{osp.basename(sample.img_path)}', image,
                    data_sample=sample, show=self.show,
                    wait_time=self.wait_time, step=0)
