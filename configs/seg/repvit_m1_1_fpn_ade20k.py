# Semantic FPN with a RepViT-M1.1 backbone on ADE20K, 40k iterations.
#
# Paper (RepViT, CVPR 2024, Table 6): mIoU 40.6 on ADE20K val (single scale).
#
# Recipe (as the official code), seed 0 as the official runs: ImageNet-1K
# weights repvit_m1_1_distill_300e;
# the four stage outputs with stage_ends='before_downsample' (the paper's
# segmentation taps: features 3, 7, 21, 24; FPN in_channels 64, 128, 256, 512);
# every backbone BatchNorm in eval mode (SyncBN, statistics frozen, affine
# trained); FPN 256 channels, 4 outputs; FPNHead 128 channels, dropout 0.1,
# SyncBN; 150 classes with reduce_zero_label; AdamW lr 2e-4, weight decay
# 1e-4; poly LR (power 0.9, min 1e-6) per iteration, no warm-up; 40k
# iterations, 8 GPUs x 4 images; train: resize to (2048, 512) with ratio
# 0.5-2.0, random crop 512x512 (cat_max_ratio 0.75), flip 0.5, photometric
# distortion, pad to 512 (seg pad 255); test: whole image, AlignResize (fit
# (2048, 512) keeping the ratio, then resize each side up to a multiple of
# 32); mIoU and a checkpoint every 4k iterations.
#
#   tools/dist_train.sh configs/seg/repvit_m1_1_fpn_ade20k.py 8
#   tools/dist_test.sh configs/seg/repvit_m1_1_fpn_ade20k.py repvit_m1_1_ade20k.pth 8
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)

crop_size = (512, 512)
checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m1_1_distill_300e.pth')
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RepViT',
        arch='m1_1',
        out_indices=(0, 1, 2, 3),
        stage_ends='before_downsample',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150, channels=128, dropout_ratio=0.1))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=(2048, 512), size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                   weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=40000,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000,
                 val_interval=4000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
# 8 GPUs x 4 images; pass --auto-scale-lr to train with another batch size.
auto_scale_lr = dict(enable=False, base_batch_size=32)

# The official runs used seed 0.
randomness = dict(seed=0)
