# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import math

import numpy as np
import pytest
import torch

pytest.importorskip('mmseg')
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import TRANSFORMS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

import mmrepvit  # noqa: E402,F401
from helpers import (  # noqa: E402
    ARCHES,
    SEG_TAPS,
    assert_loads_strictly,
    assert_paper_backbone,
    build_model,
    load_config,
    load_config_file,
    random_state,
)
from mmrepvit import RepViT  # noqa: E402


def seg_inputs(h, w, num_classes, batch=2):
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('arch', ARCHES)
def test_paper_config(arch):
    cfg = load_config('seg', f'repvit_{arch}_fpn_ade20k.py')
    assert_paper_backbone(cfg, arch, SEG_TAPS[arch])
    neck, head = cfg.model.neck, cfg.model.decode_head
    assert (neck.out_channels, neck.num_outs) == (256, 4)
    assert (head.type, head.channels, head.dropout_ratio,
            head.norm_cfg.type, head.num_classes) == ('FPNHead', 128, 0.1,
                                                      'SyncBN', 150)
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end, poly.by_epoch) == (
        'PolyLR', 0.9, 1e-6, 40000, False)
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.train_cfg.val_interval == 4000
    assert cfg.default_hooks.checkpoint.interval == 4000
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.model.data_preprocessor.seg_pad_val == 255
    assert cfg.model.test_cfg.mode == 'whole'
    types = [t.type for t in cfg.train_pipeline]
    assert types == ['LoadImageFromFile', 'LoadAnnotations', 'RandomResize',
                     'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
                     'PackSegInputs']
    rr, crop = cfg.train_pipeline[2], cfg.train_pipeline[3]
    assert rr.scale == (2048, 512) and rr.ratio_range == (0.5, 2.0)
    assert crop.crop_size == (512, 512) and crop.cat_max_ratio == 0.75
    test_resize = cfg.test_dataloader.dataset.pipeline[1]
    assert test_resize == dict(type='AlignResize', scale=(2048, 512),
                               size_divisor=32)
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'ADE20KDataset'
    assert ds.data_root == 'data/ade/ADEChallengeData2016'
    assert cfg.train_pipeline[1].reduce_zero_label is True


@pytest.mark.parametrize('arch', ['m0_6'])
def test_paper_config_trains_and_predicts(arch):
    # Builds through MMSegmentation's registry, one loss and one predict step
    # (the backbone is the only part that changes with the arch).
    model = build_model(load_config('seg', f'repvit_{arch}_fpn_ade20k.py'))
    assert isinstance(model.backbone, RepViT)
    model.train()
    data = model.data_preprocessor(seg_inputs(64, 64, 150), True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(seg_inputs(64, 96, 150),
                                                  False), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 64, 96)


@pytest.mark.parametrize('hw', [(512, 683), (375, 500), (97, 131),
                                (1024, 256), (512, 2048), (333, 4000)])
def test_align_resize_sizes(hw):
    h, w = hw
    t = TRANSFORMS.build(dict(type='AlignResize', scale=(2048, 512)))
    # The rule: scale factor fitting long side <= 2048 and short <= 512,
    # then each side rounded up to a multiple of 32.
    s = min(2048 / max(h, w), 512 / min(h, w))
    rh, rw = int(h * s + 0.5), int(w * s + 0.5)
    expect = (math.ceil(rh / 32) * 32, math.ceil(rw / 32) * 32)
    img = np.random.randint(0, 255, (h, w, 3), np.uint8)
    seg = np.random.randint(0, 7, (h, w), np.uint8)
    out = t(dict(img=img, gt_seg_map=seg))
    assert out['img'].shape == expect + (3, )
    assert out['img_shape'] == expect
    assert out['gt_seg_map'].shape == expect
    # Nearest neighbour keeps label values; no interpolated labels appear.
    assert set(np.unique(out['gt_seg_map'])) <= set(np.unique(seg))
    assert out['scale_factor'] == pytest.approx((expect[1] / w,
                                                 expect[0] / h))


@pytest.mark.parametrize('hw', [(375, 500), (97, 131), (333, 4000)])
def test_align_resize_interpolates_in_two_steps_as_the_official_code(hw):
    # The official transform rescales to fit (2048, 512) (mmcv's imrescale),
    # then resizes that image again to multiples of 32. Written here with
    # OpenCV directly; on these shapes the first factor is not 1, so one
    # resize straight to the final size gives other pixels.
    import cv2

    from mmrepvit import AlignResize
    h, w = hw
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    seg = rng.integers(0, 7, (h, w), dtype=np.uint8)
    s = min(2048 / max(h, w), 512 / min(h, w))
    assert s != 1
    rh, rw = int(h * s + 0.5), int(w * s + 0.5)
    fh, fw = math.ceil(rh / 32) * 32, math.ceil(rw / 32) * 32

    def two_steps(a, mode):
        a = cv2.resize(a, (rw, rh), interpolation=mode)
        return cv2.resize(a, (fw, fh), interpolation=mode)

    out = AlignResize(scale=(2048, 512))(dict(img=img, gt_seg_map=seg))
    assert np.array_equal(out['img'], two_steps(img, cv2.INTER_LINEAR))
    assert np.array_equal(out['gt_seg_map'], two_steps(seg, cv2.INTER_NEAREST))
    if (rh, rw) != (fh, fw):
        one_step = cv2.resize(img, (fw, fh), interpolation=cv2.INTER_LINEAR)
        assert not np.array_equal(out['img'], one_step)


def test_align_resize_image_is_bilinear_and_bad_args():
    from mmrepvit import AlignResize
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, 20:] = 200
    out = AlignResize(scale=(2048, 512))(dict(img=img))['img']
    # Bilinear: intermediate values at the edge (nearest would have none).
    assert len(np.unique(out)) > 2
    assert out.shape == (512, 512, 3)
    with pytest.raises(ValueError, match='scale must be two positive ints'):
        AlignResize(scale=(0, 512))
    with pytest.raises(ValueError, match='size_divisor must be positive'):
        AlignResize(size_divisor=0)


def test_official_ade20k_checkpoint_loads_strictly(tmp_path):
    """A file in the layout of the released repvit_*_ade20k.pth: an
    MMSegmentation 0.x checkpoint (meta with CLASSES/PALETTE and
    mmseg_version, state_dict with backbone.features.*, neck.* and
    decode_head.* keys, optimizer state). MMSegmentation 1.x kept 0.x's
    parameter names for FPN + FPNHead (its model zoo serves the 0.x files)."""
    model = build_model(load_config('seg', 'repvit_m1_1_fpn_ade20k.py'))
    state = random_state(model)
    assert any(k.startswith('backbone.features.') for k in state)
    assert any(k.startswith('decode_head.scale_heads.') for k in state)
    torch.save({
        'meta': {'mmseg_version': '0.30.0', 'mmcv_version': '1.7.1',
                 'CLASSES': tuple(f'c{i}' for i in range(150)),
                 'PALETTE': [[i, i, i] for i in range(150)],
                 'config': "model = dict(type='EncoderDecoder')",
                 'iter': 40000, 'epoch': 1},
        'state_dict': state,
        'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-6,
                                                     'params': []}]},
    }, tmp_path / 'repvit_m1_1_ade20k.pth')
    assert_loads_strictly(
        build_model(load_config('seg', 'repvit_m1_1_fpn_ade20k.py')),
        tmp_path / 'repvit_m1_1_ade20k.pth', state)


def test_drop_into_an_existing_decode_head_config(tmp_path):
    """The README's example: RepViT in MMSegmentation's own UPerNet config,
    given custom_imports and the heads' in_channels."""
    cfg_file = tmp_path / 'upernet_repvit.py'
    cfg_file.write_text(
        "_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'\n"
        "custom_imports = dict(imports=['mmrepvit'], "
        "allow_failed_imports=False)\n"
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        "model = dict(\n"
        "    pretrained=None,\n"
        "    backbone=dict(_delete_=True, type='RepViT', arch='m0_6',\n"
        "                  stage_ends='before_downsample', norm_eval=True),\n"
        "    decode_head=dict(in_channels=[40, 80, 160, 320], "
        "norm_cfg=norm_cfg),\n"
        "    auxiliary_head=dict(in_channels=160, norm_cfg=norm_cfg))\n")
    model = build_model(load_config_file(cfg_file))
    assert isinstance(model.backbone, RepViT)
    model.train()
    data = model.data_preprocessor(seg_inputs(64, 64, 150), True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'] + losses['aux.loss_ce'])
