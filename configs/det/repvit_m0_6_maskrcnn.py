# Mask R-CNN + FPN with a RepViT-M0.6 backbone on COCO 2017, 1x schedule.
#
# The paper reports no COCO result for M0.6; this config follows the same rule.
#
# The recipe is repvit_m1_1_maskrcnn.py's (see its header); this file changes
# only the arch: ImageNet-1K weights repvit_m0_6_distill_300e,
# the four stage outputs (out_indices 0-3, stage_ends 'before_pre_block': the
# paper's detection taps), FPN in_channels 40, 80, 160, 320.
#
#   tools/dist_train.sh configs/det/repvit_m0_6_maskrcnn.py 8
_base_ = ['./repvit_m1_1_maskrcnn.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m0_6_distill_300e.pth')
model = dict(
    backbone=dict(
        arch='m0_6',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[40, 80, 160, 320]))
