# Semantic FPN with a RepViT-M1.0 backbone on ADE20K, 40k iterations.
#
# The paper reports no ADE20K result for M1.0; this config follows the same rule.
#
# The recipe is repvit_m1_1_fpn_ade20k.py's (see its header); this file
# changes only the arch: ImageNet-1K weights repvit_m1_0_distill_300e,
# the four stage outputs with stage_ends='before_downsample' (the paper's
# segmentation taps), FPN in_channels 56, 112, 224, 448.
#
#   tools/dist_train.sh configs/seg/repvit_m1_0_fpn_ade20k.py 8
_base_ = ['./repvit_m1_1_fpn_ade20k.py']

checkpoint_url = ('https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                  'repvit_m1_0_distill_300e.pth')
model = dict(
    backbone=dict(
        arch='m1_0',
        out_indices=(0, 1, 2, 3),
        stage_ends='before_downsample',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_url)),
    neck=dict(in_channels=[56, 112, 224, 448]))
