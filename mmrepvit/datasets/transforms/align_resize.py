# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import math

import mmcv
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AlignResize(BaseTransform):
    """The RepViT paper's ADE20K test-time resize, in the official two steps.

    Rescale to fit ``scale`` keeping the aspect ratio, then resize both sides
    **up** to multiples of ``size_divisor``: ``img`` with ``interpolation``,
    ``gt_seg_map`` (if present) nearest, as the released checkpoints were
    evaluated. Sets ``img_shape``, ``scale_factor`` (w, h), ``keep_ratio``.

    Args:
        scale (tuple[int, int]): The box to fit, its long and short side in
            either order. Defaults to ``(2048, 512)``, as in the paper.
        size_divisor (int): Sides go up to a multiple. Defaults to ``32``.
        interpolation (str): Image interpolation. Defaults to ``'bilinear'``.
        backend (str): mmcv image backend. Defaults to ``'cv2'``.

    Example:
        >>> import numpy as np
        >>> from mmrepvit import AlignResize
        >>> img = np.zeros((375, 500, 3), np.uint8)
        >>> AlignResize(scale=(2048, 512))(dict(img=img))['img_shape']
        (512, 704)
    """

    def __init__(self, scale: tuple = (2048, 512), size_divisor: int = 32,
                 interpolation: str = 'bilinear', backend: str = 'cv2'):
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f'scale must be two positive ints, got {scale}.')
        if size_divisor <= 0:
            raise ValueError(f'size_divisor must be positive: {size_divisor}')
        self.scale, self.size_divisor = tuple(scale), size_divisor
        self.interpolation, self.backend = interpolation, backend

    def _resize(self, image, interpolation: str):
        image = mmcv.imrescale(image, self.scale, interpolation=interpolation,
                               backend=self.backend)
        h, w = (math.ceil(s / self.size_divisor) * self.size_divisor
                for s in image.shape[:2])
        return mmcv.imresize(image, (w, h), interpolation=interpolation,
                             backend=self.backend)

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        results['img'] = self._resize(results['img'], self.interpolation)
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = self._resize(results['gt_seg_map'],
                                                 'nearest')
        new_h, new_w = results['img'].shape[:2]
        results.update(img_shape=(new_h, new_w),
                       scale_factor=(new_w / w, new_h / h), keep_ratio=True)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, size_divisor='
                f'{self.size_divisor}, interpolation={self.interpolation!r})')
