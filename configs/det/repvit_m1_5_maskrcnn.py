# Mask R-CNN + FPN with a RepViT-M1.5 backbone on COCO 2017, 1x schedule.
#
# Paper (Table 5): box AP 41.6 / AP50 63.2 / AP75 45.3, mask AP 38.6 / AP50 60.5 / AP75 41.5.
#
# The recipe is repvit_m1_1_maskrcnn.py's (see its header); this file changes
# only the arch: ImageNet-1K weights repvit_m1_5_distill_300e,
# the four stage outputs (out_indices 0-3, stage_ends 'before_pre_block': the
# paper's detection taps), FPN in_channels 64, 128, 256, 512.
#
#   tools/dist_train.sh configs/det/repvit_m1_5_maskrcnn.py 8
_base_ = ['./repvit_m1_1_maskrcnn.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m1_5_distill_300e.pth')
model = dict(
    backbone=dict(
        arch='m1_5',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[64, 128, 256, 512]))
