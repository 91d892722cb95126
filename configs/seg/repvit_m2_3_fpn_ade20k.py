# Semantic FPN with a RepViT-M2.3 backbone on ADE20K, 40k iterations.
#
# Paper (Table 6): mIoU 46.1 on ADE20K val (single scale).
#
# The recipe is repvit_m1_1_fpn_ade20k.py's (see its header); this file
# changes only the arch: ImageNet-1K weights repvit_m2_3_distill_450e,
# the four stage outputs with stage_ends='before_downsample' (the paper's
# segmentation taps), FPN in_channels 80, 160, 320, 640.
#
#   tools/dist_train.sh configs/seg/repvit_m2_3_fpn_ade20k.py 8
_base_ = ['./repvit_m1_1_fpn_ade20k.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m2_3_distill_450e.pth')
model = dict(
    backbone=dict(
        arch='m2_3',
        out_indices=(0, 1, 2, 3),
        stage_ends='before_downsample',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[80, 160, 320, 640]))
