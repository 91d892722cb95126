# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The generated segmentation demo set, read by MMSegmentation's ADE20K class.

Imported by ``configs/seg/repvit_m0_6_fpn_demo.py`` through ``custom_imports``;
it needs mmseg, so ``import mmrepvit`` does not import it.
"""
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class DemoTexturesDataset(ADE20KDataset):
    """The texture set of ``tools/make_demo_ade.py``: ADE20K's layout and
    conventions (``.jpg`` images, ``.png`` label maps, 0 = other, ignored by
    ``reduce_zero_label``) with 5 classes instead of 150."""

    METAINFO = dict(
        classes=('sky', 'grass', 'water', 'brick', 'sand'),
        palette=[[135, 206, 250], [34, 139, 34], [0, 70, 160], [178, 34, 34],
                 [238, 214, 175]])
