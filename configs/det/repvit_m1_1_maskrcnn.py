# Mask R-CNN + FPN with a RepViT-M1.1 backbone on COCO 2017, 1x schedule.
#
# Paper (RepViT, CVPR 2024, Table 5): box AP 39.8 / AP50 61.9 / AP75 43.5,
# mask AP 37.2 / AP50 58.8 / AP75 40.1 on val2017.
#
# Recipe (as the official code), seed 0 as the official runs: ImageNet-1K
# weights repvit_m1_1_distill_300e;
# the four stage outputs, out_indices (0, 1, 2, 3) with the default
# stage_ends='before_pre_block' (the paper's detection taps: features 2, 6,
# 20, 24; FPN in_channels 64, 128, 256, 512); every
# backbone BatchNorm in eval mode (SyncBN, statistics frozen, affine trained);
# AdamW lr 2e-4, weight decay 0.05, no gradient clipping; 12 epochs, LR x0.1 at
# epochs 8 and 11; linear warm-up over 500 iterations from 1e-6; resize to
# 1333x800 keeping the ratio, flip 0.5; 8 GPUs x 2 images (auto_scale_lr base
# batch 16: pass --auto-scale-lr to train with another total batch size).
#
#   tools/dist_train.sh configs/det/repvit_m1_1_maskrcnn.py 8
#   tools/dist_test.sh configs/det/repvit_m1_1_maskrcnn.py repvit_m1_1_coco.pth 8
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m1_1_distill_300e.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepViT',
        arch='m1_1',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The official runs used seed 0.
randomness = dict(seed=0)
