# CPU demo: Mask R-CNN + FPN with RepViT-M0.6, trained from scratch on the
# generated shapes dataset (tools/dataset_converters/make_demo_coco.py: 4
# classes, 256x256 images, 240 train / 30 val) in under 10 minutes on 2 CPU
# cores, then evaluated with COCO bbox and segm AP. Run it all with
# `python tools/demo.py`.
#
# Differs from the paper recipe (repvit_m0_6_maskrcnn.py) only where a small
# from-scratch CPU run needs it: no ImageNet weights, so BatchNorm trains
# (plain BN, statistics updated); 256-pixel images; 2 images per batch (twice
# the optimizer steps of 4 for the same time); AdamW lr 3e-3 with a 100-step
# warm-up, 7 epochs, lr x0.1 for the last one. The neck and heads are the
# paper's, narrowed for CPU time, which they dominate (the backbone is about a
# third of a step): 64-channel FPN, RPN and mask head (256 in the paper), a
# 256-wide box head (1024), RoIAlign with 1 sampling point per bin (0), fewer
# proposals while training (500 before NMS, 300 kept; 2000/1000). The box head
# learns from more and more positive RoIs (128 sampled, half positive: 512 and
# a quarter in the paper) and regresses class-agnostic boxes (4 classes share
# one regressor). Each change and its effect is in docs/demo.md.
_base_ = ['./repvit_m0_6_maskrcnn.py']

classes = ('circle', 'triangle', 'square', 'star')
data_root = 'data/demo_coco/'
image_size = (256, 256)
neck_channels = 64

model = dict(
    backbone=dict(norm_cfg=dict(type='BN'), norm_eval=False, init_cfg=None),
    neck=dict(out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=1), out_channels=neck_channels),
        mask_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=1), out_channels=neck_channels),
        bbox_head=dict(
            in_channels=neck_channels,
            fc_out_channels=256,
            reg_class_agnostic=True,
            num_classes=len(classes)),
        mask_head=dict(
            in_channels=neck_channels,
            conv_out_channels=neck_channels,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128, pos_fraction=0.5))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 7
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=3e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[6], gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=2)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    # draw confident predictions only (--show-dir); AP uses all of them
    visualization=dict(score_thr=0.5))
log_processor = dict(window_size=10)

# Reproducible runs (tools/demo.py evaluates the untrained model with the
# same seed).
randomness = dict(seed=0)
