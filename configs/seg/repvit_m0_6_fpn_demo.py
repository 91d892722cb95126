# CPU demo: Semantic FPN with RepViT-M0.6, trained from scratch on the
# generated textures dataset (tools/dataset_converters/make_demo_ade.py:
# ADE20K layout, 5 classes plus "other" = 0, ignored through
# reduce_zero_label; 256x256 images, 120 train / 30 val) in under 10 minutes on
# 2 CPU cores, then evaluated with mIoU. Run it all with
# `python tools/demo.py seg`.
#
# Differs from the paper recipe (repvit_m0_6_fpn_ade20k.py) only where a small
# from-scratch CPU run needs it: no ImageNet weights, so BatchNorm trains
# (plain BN everywhere, as SyncBN needs CUDA to synchronise); 256-pixel crops
# and a (512, 256) scale; a larger learning rate; fewer iterations. The test
# resize is the paper's AlignResize rule at the demo's scale.
_base_ = ['./repvit_m0_6_fpn_ade20k.py']

custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)
# the classes and palette of tools/dataset_converters/make_demo_ade.py
metainfo = dict(
    classes=('sky', 'grass', 'water', 'brick', 'sand'),
    palette=[[135, 206, 250], [34, 139, 34], [0, 70, 160], [178, 34, 34],
             [238, 214, 175]])
num_classes = len(metainfo['classes'])
data_root = 'data/demo_ade'
crop_size = (256, 256)
scale = (512, 256)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg, norm_eval=False, init_cfg=None),
    decode_head=dict(num_classes=num_classes, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=scale, size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        type='BaseSegDataset',
        metainfo=metainfo,
        data_root=data_root,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        type='BaseSegDataset',
        metainfo=metainfo,
        data_root=data_root,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 200
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=8)

# Reproducible runs (tools/demo.py evaluates the untrained model with the
# same seed).
randomness = dict(seed=0)
