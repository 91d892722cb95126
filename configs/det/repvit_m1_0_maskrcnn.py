# Mask R-CNN + FPN with a RepViT-M1.0 backbone on COCO 2017, 1x schedule.
#
# The paper reports no COCO result for M1.0; this config follows the same rule.
#
# The recipe is repvit_m1_1_maskrcnn.py's (see its header); this file changes
# only the arch: ImageNet-1K weights repvit_m1_0_distill_300e, taps features 2, 6, 22, 26
# (the block before the last block of each of the first three stages, and the
# last block), FPN in_channels 56, 112, 224, 448.
#
#   tools/dist_train.sh configs/det/repvit_m1_0_maskrcnn.py 8
_base_ = ['./repvit_m1_1_maskrcnn.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m1_0_distill_300e.pth')
model = dict(
    backbone=dict(
        arch='m1_0',
        out_indices=(2, 6, 22, 26),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[56, 112, 224, 448]))
