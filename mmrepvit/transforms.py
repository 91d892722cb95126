# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import math
from typing import Dict, Tuple

import mmcv
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AlignResize(BaseTransform):
    """The RepViT paper's ADE20K test-time resize.

    First resize keeping the aspect ratio so that the image fits ``scale``
    (long side <= ``max(scale)``, short side <= ``min(scale)``, as mmcv's
    ``imrescale``), then resize height and width each **up** to the next
    multiple of ``size_divisor`` (a resize, not a pad). Images use
    ``interpolation`` (bilinear), segmentation maps nearest neighbour.

    Registered in MMEngine's root ``TRANSFORMS`` registry, so it builds in
    MMSegmentation pipelines as ``dict(type='AlignResize', scale=(2048, 512))``.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``, ``gt_seg_map``
    (if present). Added keys: ``scale_factor`` (w, h relative to the input),
    ``keep_ratio``.

    Args:
        scale (tuple[int, int]): The box to fit, ``(2048, 512)`` in the paper.
        size_divisor (int): Height and width are rounded up to a multiple of
            it. Defaults to ``32``.
        interpolation (str): Image interpolation. Defaults to ``'bilinear'``.
        backend (str): mmcv image backend. Defaults to ``'cv2'``.

    Example:
        >>>         >>> t = AlignResize(scale=(2048, 512))
        >>> t(dict(img=np.zeros((375, 500, 3), np.uint8)))['img_shape']
        (512, 704)
    """

    def __init__(self, scale: Tuple[int, int] = (2048, 512),
                 size_divisor: int = 32, interpolation: str = 'bilinear',
                 backend: str = 'cv2'):
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f'scale must be two positive ints, got {scale}.')
        if size_divisor <= 0:
            raise ValueError(
                f'size_divisor must be positive, got {size_divisor}.')
        self.scale = tuple(scale)
        self.size_divisor = size_divisor
        self.interpolation = interpolation
        self.backend = backend

    def target_size(self, h: int, w: int) -> Tuple[int, int]:
        """The ``(h, w)`` an input of size ``(h, w)`` is resized to."""
        new_w, new_h = mmcv.rescale_size((w, h), self.scale)
        d = self.size_divisor
        return (int(math.ceil(new_h / d)) * d, int(math.ceil(new_w / d)) * d)

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        new_h, new_w = self.target_size(h, w)
        results['img'] = mmcv.imresize(
            img, (new_w, new_h), interpolation=self.interpolation,
            backend=self.backend)
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = mmcv.imresize(
                results['gt_seg_map'], (new_w, new_h),
                interpolation='nearest', backend=self.backend)
        results['img_shape'] = (new_h, new_w)
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = True
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'size_divisor={self.size_divisor}, '
                f'interpolation={self.interpolation!r})')
