# Mask R-CNN + FPN with a RepViT-M2.3 backbone on COCO 2017, 1x schedule.
#
# Paper (Table 5): box AP 44.6 / AP50 66.1 / AP75 48.8, mask AP 40.8 / AP50 63.6 / AP75 43.9.
#
# The recipe is repvit_m1_1_maskrcnn.py's (see its header); this file changes
# only the arch: ImageNet-1K weights repvit_m2_3_distill_450e,
# the four stage outputs (out_indices 0-3, stage_ends 'before_pre_block': the
# paper's detection taps), FPN in_channels 80, 160, 320, 640.
#
#   tools/dist_train.sh configs/det/repvit_m2_3_maskrcnn.py 8
_base_ = ['./repvit_m1_1_maskrcnn.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m2_3_distill_450e.pth')
model = dict(
    backbone=dict(
        arch='m2_3',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[80, 160, 320, 640]))
