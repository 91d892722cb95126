# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import pytest
import torch

pytest.importorskip('mmdet')
from mmdet.testing import demo_mm_inputs  # noqa: E402

import mmrepvit  # noqa: E402,F401
from helpers import (  # noqa: E402
    ARCHES,
    DET_TAPS,
    assert_loads_strictly,
    assert_paper_backbone,
    build_model,
    load_config,
    load_config_file,
    random_state,
)
from mmrepvit import RepViT  # noqa: E402


@pytest.mark.parametrize('arch', ARCHES)
def test_paper_config(arch):
    cfg = load_config('det', f'repvit_{arch}_maskrcnn.py')
    # The paper's recipe, as asserted facts of the resolved config.
    assert_paper_backbone(cfg, arch, DET_TAPS[arch])
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert 'clip_grad' not in cfg.optim_wrapper
    assert cfg.train_cfg.max_epochs == 12
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end,
            warmup.by_epoch) == ('LinearLR', 1e-6, 500, False)
    assert list(steps.milestones) == [8, 11] and steps.gamma == 0.1
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    resize = [t for t in cfg.train_pipeline if t.type == 'Resize'][0]
    assert resize.scale == (1333, 800) and resize.keep_ratio
    assert [t.prob for t in cfg.train_pipeline
            if t.type == 'RandomFlip'] == [0.5]
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'


@pytest.mark.parametrize('arch', ['m0_6'])
def test_paper_config_trains_and_predicts(arch):
    # Builds through MMDetection's registry, one loss and one predict step
    # (the backbone is the only part that changes with the arch).
    model = build_model(load_config('det', f'repvit_{arch}_maskrcnn.py'))
    assert isinstance(model.backbone, RepViT)
    model.train()
    assert all(not m.training for m in model.backbone.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    packed = demo_mm_inputs(1, [[3, 96, 128]], num_items=[2], with_mask=True)
    total, _ = model.parse_losses(
        model(**model.data_preprocessor(packed, True), mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.features[-1].channel_mixer.m[0].c.weight.grad \
        is not None
    model.eval()
    with torch.no_grad():
        (result, ) = model(**model.data_preprocessor(packed, False),
                           mode='predict')
    inst = result.pred_instances
    assert inst.bboxes.shape[1] == 4
    assert inst.masks.shape[1:] == (96, 128)


def official_mmdet2_checkpoint(model, path):
    """A file in the layout of the released repvit_*_coco.pth: an MMDetection
    2.x checkpoint (meta with CLASSES and mmdet_version, state_dict with the
    backbone under backbone.features.* and SyncBN buffers, optimizer state).
    MMDetection 3.x kept 2.x's parameter names for Mask R-CNN + FPN (its model
    zoo serves the 2.x files), so the names below are those of the model."""
    state = random_state(model)
    assert any(k.startswith('backbone.features.') for k in state)
    torch.save({
        'meta': {'mmdet_version': '2.28.2', 'mmcv_version': '1.7.1',
                 'CLASSES': tuple(f'class{i}' for i in range(80)),
                 'config': "model = dict(type='MaskRCNN')", 'epoch': 12,
                 'iter': 87960, 'hook_msgs': {'last_ckpt': 'epoch_12.pth'}},
        'state_dict': state,
        'optimizer': {'state': {0: {'step': torch.tensor(1.),
                                    'exp_avg': torch.zeros(3)}},
                      'param_groups': [{'lr': 2e-6, 'weight_decay': 0.05,
                                        'params': [0]}]},
    }, path)
    return state


def test_official_coco_checkpoint_loads_strictly(tmp_path):
    path = tmp_path / 'repvit_m1_1_coco.pth'
    state = official_mmdet2_checkpoint(
        build_model(load_config('det', 'repvit_m1_1_maskrcnn.py')), path)
    assert_loads_strictly(
        build_model(load_config('det', 'repvit_m1_1_maskrcnn.py')), path,
        state)


def test_drop_into_an_existing_one_stage_detector(tmp_path):
    """The README's example: RepViT in MMDetection's own RetinaNet config,
    given custom_imports and the FPN in_channels."""
    cfg_file = tmp_path / 'retinanet_repvit.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['mmrepvit'], "
        "allow_failed_imports=False)\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='RepViT', arch='m0_6',\n"
        "                  out_indices=(1, 2, 3), norm_eval=True),\n"
        "    neck=dict(in_channels=[80, 160, 320], start_level=0))\n")
    model = build_model(load_config_file(cfg_file))
    assert isinstance(model.backbone, RepViT)
    packed = demo_mm_inputs(1, [[3, 96, 128]], num_items=[2])
    total, _ = model.parse_losses(
        model(**model.data_preprocessor(packed, True), mode='loss'))
    assert torch.isfinite(total)
