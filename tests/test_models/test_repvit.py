# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import copy
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import ARCHES, DET_TAPS, SEG_TAPS, STRIDES, WIDTHS, randomize
from mmrepvit import RepViT, block_settings
from mmrepvit.models.layers import Conv2dBN, RepVGGDW, RepViTBlock

# Official RepViT backbones (features only, millions, 3 decimals): training /
# fused.
PARAMS = {
    'm0_6': (2.166, 2.147), 'm0_9': (4.718, 4.682), 'm1_0': (6.403, 6.361),
    'm1_1': (7.775, 7.731), 'm1_5': (13.616, 13.537),
    'm2_3': (22.404, 22.286)
}


def count(model):
    return sum(p.numel() for p in model.parameters())


def downsampled(n, times):
    # A 3x3 stride-2 conv with padding 1 maps n to ceil(n / 2).
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


# The official arch table (github.com/THU-MIG/RepViT) as its code writes it,
# one character per block.
SE_FLAGS = {
    'm0_6': '10010010101010001',
    'm0_9': '10001000101010101010100010',
    'm1_0': '10001000101010101010100010',
    'm1_1': '100010001010101010100010',
    'm1_5': '101000101000101010101010101010101010001010',
    'm2_3': '101010001010100010101010101010101010101010101010100010',
}
BLOCK_WIDTHS = {
    'm0_6': [40] * 2 + [80] * 3 + [160] * 10 + [320] * 2,
    'm0_9': [48] * 3 + [96] * 4 + [192] * 16 + [384] * 3,
    'm1_0': [56] * 3 + [112] * 4 + [224] * 16 + [448] * 3,
    'm1_1': [64] * 3 + [128] * 4 + [256] * 14 + [512] * 3,
    'm1_5': [64] * 5 + [128] * 6 + [256] * 26 + [512] * 5,
    'm2_3': [80] * 7 + [160] * 8 + [320] * 36 + [640] * 3,
}


@pytest.mark.parametrize('arch', ARCHES)
def test_block_rule_reproduces_the_official_arch_table(arch):
    blocks = block_settings(**RepViT.arch_zoo[arch])
    assert [b.width for b in blocks] == BLOCK_WIDTHS[arch]
    assert ''.join(str(b.stride) for b in blocks) == STRIDES[arch]
    assert ''.join(str(int(b.use_se)) for b in blocks) == SE_FLAGS[arch]
    # ... and the built network has an SE exactly there.
    model = RepViT(arch)
    has_se = ''.join(
        str(int(any('fc1' in n for n, _ in f.token_mixer.named_modules())))
        for f in model.features[1:])
    assert has_se == SE_FLAGS[arch]


@pytest.mark.parametrize('arch', ARCHES)
def test_stage_outputs_shapes_and_widths(arch):
    model = RepViT(arch).eval()
    # OpenMMLab convention: out_indices are stages, all four by default.
    assert model.out_indices == (0, 1, 2, 3)
    assert model.stage_outputs == DET_TAPS[arch]
    seg = RepViT(arch, stage_ends='before_downsample')
    assert seg.stage_outputs == SEG_TAPS[arch]
    assert model.out_channels == seg.out_channels == WIDTHS[arch]
    assert [f['module'] for f in seg.feature_info] == [
        f'features.{i}' for i in SEG_TAPS[arch]]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(WIDTHS[arch], (4, 8, 16, 32))
    ]
    assert [f['reduction'] for f in model.feature_info] == [4, 8, 16, 32]


def test_outputs_are_the_tapped_features():
    # The outputs are exactly the features[i] outputs named by stage_outputs.
    model = randomize(RepViT('m0_6', stage_ends='before_downsample')).eval()
    x = torch.rand(1, 3, 64, 64)
    taps = []
    with torch.no_grad():
        y = x
        for layer in model.features:
            y = layer(y)
            taps.append(y)
        outs = model(x)
    for out, i in zip(outs, SEG_TAPS['m0_6']):
        assert torch.equal(out, taps[i])


@pytest.mark.parametrize('hw', [(97, 131), (32, 32), (33, 65)])
def test_odd_input_sizes(hw):
    model = RepViT('m0_6', stage_ends='before_downsample').eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *hw))
    # stem /4 (two stride-2 convs), then one stride-2 per later stage.
    assert [tuple(o.shape[2:]) for o in outs] == [
        (downsampled(hw[0], k), downsampled(hw[1], k)) for k in (2, 3, 4, 5)
    ]


@pytest.mark.parametrize('arch', ARCHES)
def test_parameter_counts(arch):
    model = RepViT(arch)
    assert round(count(model) / 1e6, 3) == PARAMS[arch][0]
    model.eval().switch_to_deploy()
    assert round(count(model) / 1e6, 3) == PARAMS[arch][1]
    assert round(count(RepViT(arch, deploy=True)) / 1e6, 3) == PARAMS[arch][1]


def test_official_module_names():
    keys = RepViT('m1_1').state_dict().keys()
    for k in ['features.0.0.c.weight', 'features.0.2.bn.running_var',
              'features.1.token_mixer.0.conv.c.weight',
              'features.1.token_mixer.0.conv1.bias',
              'features.1.token_mixer.0.bn.weight',
              'features.1.token_mixer.1.fc1.weight',
              'features.1.channel_mixer.m.0.c.weight',
              'features.1.channel_mixer.m.2.bn.bias',
              'features.4.token_mixer.0.c.weight',
              'features.4.token_mixer.2.bn.weight']:
        assert k in keys, k
    # features 2 has no SE, so token_mixer.1 is an Identity without weights.
    assert not any(k.startswith('features.2.token_mixer.1.') for k in keys)


def test_se_reduced_widths():
    # The official networks' SE widths: C -> R.
    table = {40: 8, 48: 16, 56: 16, 64: 16, 80: 24, 96: 24, 112: 32, 128: 32,
             160: 40, 192: 48, 224: 56, 256: 64, 320: 80, 384: 96, 448: 112,
             512: 128, 640: 160}
    from mmrepvit.models.layers import SqueezeExcite
    for c, r in table.items():
        assert SqueezeExcite(c).fc1.out_channels == r


def test_custom_arch_dict():
    arch = dict(widths=[16, 32], depths=[3, 2])
    model = RepViT(arch, out_indices=(0, 1)).eval()
    assert model.arch_name == 'custom'
    # Block 3 is the pre-block, so stage 0 ends at block 2.
    assert model.stage_outputs == [2, 5]
    se = [b.use_se for b in block_settings(**arch)]
    assert se == [True, False, False, False, True]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 16), (1, 32, 8, 8)]


@pytest.mark.parametrize('kwargs,error,message', [
    # An unknown arch name lists the valid ones.
    (dict(arch='m9'), ValueError, r"Unknown RepViT arch 'm9'; valid arches "
     r"are \['m0_6'"),
    # arch must be a str or a dict.
    (dict(arch=3), TypeError, 'arch must be a str or a dict'),
    # A custom dict needs exactly widths and depths.
    (dict(arch=dict(widths=[16])), ValueError, r"missing \['depths'\]"),
    (dict(arch=dict(widths=[16], depths=[2], se=[1])), ValueError,
     r"unexpected \['se'\]"),
    # One width and one depth per stage.
    (dict(arch=dict(widths=[16, 32], depths=[2])), ValueError,
     'one entry per stage'),
    # Widths are even (the stem halves the first one).
    (dict(arch=dict(widths=[15], depths=[2])), ValueError, 'even ints'),
    # Every stage but the last holds a stride-2 block and a pre-block.
    (dict(arch=dict(widths=[16, 32], depths=[1, 1])), ValueError,
     'at least 2 in every stage but the last'),
    # out_indices are stages: m0_6 has 4 (0..3, or -4..-1).
    (dict(out_indices=(1, 4)), IndexError,
     r'out_indices entry 4 .* 4 stages \(valid: 0\.\.3'),
    (dict(out_indices=-5), IndexError, 'out_indices entry -5'),
    (dict(out_indices=[]), TypeError, 'out_indices must be'),
    (dict(out_indices=(0.5, )), TypeError, 'out_indices must be'),
    (dict(stage_ends='ends'), ValueError,
     r"stage_ends must be one of \('before_pre_block', 'before_downsample'\)"),
    # frozen_stages in [-1, number of stages].
    (dict(frozen_stages=5), ValueError, r'frozen_stages must be in \[-1, 4\]'),
    (dict(frozen_stages=-2), ValueError, 'frozen_stages'),
    (dict(frozen_stages='all'), ValueError,
     r"frozen_stages must be in \[-1, 4\], an integer .*got 'all'"),
    (dict(drop_path_rate=1.0), ValueError, 'drop_path_rate'),
    # mmcv's build_norm_layer names an unknown norm type.
    (dict(norm_cfg=dict(type='Nope')), KeyError,
     "Unknown norm layer type 'Nope'"),
])
def test_bad_arguments(kwargs, error, message):
    kwargs = dict(dict(arch='m0_6'), **kwargs)
    with pytest.raises(error, match=message):
        RepViT(**kwargs)


def test_negative_and_int_out_indices():
    model = RepViT('m0_6', out_indices=(-1, 0, 2)).eval()
    assert model.out_indices == (3, 0, 2)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    # Returned in the order asked for.
    assert [tuple(o.shape) for o in outs] == [
        (1, 320, 2, 2), (1, 40, 16, 16), (1, 160, 4, 4)]
    assert RepViT('m0_6', out_indices=1).out_indices == (1, )
    assert RepViT('m0_6', out_indices=1).out_channels == [80]


@pytest.mark.parametrize('stage_ends,last_blocks', [
    # m0_6: stem 0; stages end at blocks 1, 4, 14, 17 (each pre-block opens
    # the next stage) or at 2, 5, 15, 17 (right before each stride-2 block).
    ('before_pre_block', [0, 1, 4, 14, 17]),
    ('before_downsample', [0, 2, 5, 15, 17]),
])
@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen, stage_ends, last_blocks):
    model = RepViT('m0_6', frozen_stages=frozen, stage_ends=stage_ends)
    model.train()
    last_frozen = last_blocks[frozen] if frozen >= 0 else -1
    for i, layer in enumerate(model.features):
        frozen_here = i <= last_frozen
        assert all(p.requires_grad != frozen_here for p in layer.parameters())
        for m in layer.modules():
            if isinstance(m, _BatchNorm):
                assert m.training != frozen_here


def test_norm_eval_keeps_bn_in_eval_but_trains_affine():
    model = RepViT('m0_6', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert all(m.weight.requires_grad for m in bns)
    before = bns[3].running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert torch.equal(bns[3].running_mean, before)
    model.train(False)
    model.train(True)
    assert all(not m.training for m in bns)
    # Without norm_eval, training mode updates the statistics.
    model = RepViT('m0_6')
    model.train()
    bn = [m for m in model.modules() if isinstance(m, _BatchNorm)][3]
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert not torch.equal(bn.running_mean, before)


def test_syncbn_norm_cfg():
    model = RepViT('m0_6', norm_cfg=dict(type='SyncBN'))
    assert isinstance(model.features[0][0].bn, nn.SyncBatchNorm)
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())


def test_group_norm_trains_but_does_not_fuse():
    # Any norm mmcv builds works; only BatchNorm folds into a convolution.
    model = RepViT('m0_6', norm_cfg=dict(type='GN', num_groups=4))
    assert isinstance(model.features[0][0].bn, nn.GroupNorm)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    outs = model(torch.rand(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == WIDTHS['m0_6']
    with pytest.raises(TypeError, match='Only BatchNorm folds.*GroupNorm'):
        model.eval().switch_to_deploy()


def test_drop_path():
    # Randomised so that the residual branches (zero-initialised) are live.
    model = randomize(RepViT('m0_6', drop_path_rate=0.2))
    from mmcv.cnn.bricks import DropPath
    paths = [b.channel_mixer.drop_path for b in model.features[1:]]
    # The first block's rate is 0 (no DropPath), then it rises to 0.2.
    assert isinstance(paths[0], nn.Identity)
    assert all(isinstance(p, DropPath) for p in paths[1:])
    rates = [p.drop_prob for p in paths[1:]]
    assert rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x)[-1], model(x)[-1]
    assert torch.equal(a, b)   # no randomness in eval mode
    model.train()
    torch.manual_seed(0)
    c = model(x)[-1]
    torch.manual_seed(1)
    d = model(x)[-1]
    assert not torch.allclose(c, d)


def test_with_cp_same_outputs_grads_and_bn_stats():
    torch.manual_seed(0)
    ref = randomize(RepViT('m0_6'), seed=1)
    cp = RepViT('m0_6', with_cp=True)
    cp.load_state_dict(ref.state_dict())
    ref.train()
    cp.train()
    x = torch.rand(2, 3, 64, 64)
    out_ref = ref(x)
    out_cp = cp(x)
    for a, b in zip(out_ref, out_cp):
        assert torch.allclose(a, b, rtol=0, atol=0)
    sum(o.square().mean() for o in out_ref).backward()
    sum(o.square().mean() for o in out_cp).backward()
    for (name, p), q in zip(ref.named_parameters(), cp.parameters()):
        # The recomputed forward is the same arithmetic, so gradients agree
        # to float rounding of the reduction order (here exactly or ~1e-7).
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name
    # The recomputation must not update BatchNorm statistics a second time.
    for (name, a), b in zip(ref.named_buffers(), cp.buffers()):
        assert torch.equal(a, b), name


# ----------------------------------------------------------- re-parameterising
def rel_err(a, b):
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize('factory,in_channels', [
    (lambda: Conv2dBN(8, 16, 3, 2, 1), 8),
    (lambda: Conv2dBN(8, 8, 3, 1, 1, groups=8), 8),
    (lambda: RepVGGDW(8), 8),
    (lambda: RepViTBlock(16, 16, 1, True), 16),
    (lambda: RepViTBlock(16, 32, 2, False), 16),
    (lambda: RepViTBlock(16, 32, 2, True), 16),
])
def test_block_fusion_float32(factory, in_channels):
    from mmrepvit.models.layers import fuse_modules
    m = randomize(factory(), seed=3).eval()
    x = torch.randn(2, in_channels, 17, 19)
    with torch.no_grad():
        y = m(x)
        if hasattr(m, 'fuse'):
            fused = m.fuse()
        else:           # a block fuses its children in place
            fused = m
            assert fuse_modules(m) > 0
        y2 = fused(x)
    assert not any(isinstance(k, _BatchNorm) for k in fused.modules())
    # One fused block in float32: 1e-5 relative to the largest output.
    assert rel_err(y, y2) < 1e-5


@pytest.mark.parametrize('arch', ARCHES)
def test_network_fusion_float64_exact(arch):
    model = randomize(RepViT(arch), seed=0).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    for a, b in zip(before, after):
        assert rel_err(a, b) < 1e-9


@pytest.mark.parametrize('arch,bound', [('m0_6', 1e-4), ('m1_5', 3e-4)])
def test_network_fusion_float32(arch, bound):
    model = randomize(RepViT(arch), seed=0).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(x.double())
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    # The fused weights are computed in float64 and rounded once to float32,
    # but float32 networks round in every one of their ~100-200
    # convolutions and the errors compound with depth: against the float64
    # network, the unfused float32 one is off by up to ~1e-5 (m0_6) and
    # ~1e-4 (m1_5) relative to the largest activation over 40 random
    # inputs here. The fused float32 network must be as close to the
    # exact result as that (bounds with a 3-10x margin).
    for a, b, e in zip(after, before, exact):
        assert rel_err(a.double(), e) < bound
        assert rel_err(b.double(), e) < bound


def test_deploy_strict_round_trip_and_idempotence():
    model = randomize(RepViT('m0_6'), seed=0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    model.switch_to_deploy()
    state = model.state_dict()
    assert not any('.bn.' in k or k.endswith('.c.weight') for k in state)
    model.switch_to_deploy()           # a second call changes nothing
    assert model.state_dict().keys() == state.keys()
    deployed = RepViT('m0_6', deploy=True).eval()
    result = deployed.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        out = deployed(x)
    for a, b in zip(ref, out):
        assert rel_err(a, b) < 1e-4   # whole network, float32: see above


def test_switch_to_deploy_in_training_mode_warns():
    model = RepViT('m0_6').train()
    with pytest.warns(UserWarning, match='training mode'):
        model.switch_to_deploy()
    assert model.deploy
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())


def test_switch_to_deploy_helper_on_a_wrapping_model():
    from mmrepvit import switch_to_deploy

    class Wrapper(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = RepViT('m0_6')
            self.other = RepViT('m0_6')
            self.head = nn.Conv2d(320, 2, 1)

    model = Wrapper().eval()
    assert switch_to_deploy(model) == 2
    assert model.backbone.deploy and model.other.deploy
    assert switch_to_deploy(model) == 0


def test_import_needs_neither_mmdet_nor_mmseg():
    # A fresh interpreter where importing mmdet or mmseg fails.
    import subprocess
    import sys
    code = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmdet', 'mmseg'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import torch
from mmrepvit import RepViT
out = RepViT('m0_6').eval()(torch.rand(1, 3, 32, 32))
assert len(out) == 4
assert not any(m.split('.')[0] in ('mmdet', 'mmseg') for m in sys.modules)
print('ok')
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_docstring_examples_run():
    # The Example: sections of RepViT and AlignResize, as doctests.
    import doctest

    import mmrepvit.datasets.transforms.align_resize as align_resize
    import mmrepvit.models.backbones.repvit as repvit
    for module in (repvit, align_resize):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize('shape,message', [
    ((3, 64, 64), r'4-D image batch \(N, C, H, W\), got a 3-D tensor'),
    ((1, 1, 3, 64, 64), 'got a 5-D tensor'),
    ((1, 1, 64, 64), r'built for 3-channel images but got 1 channels.*'
     r'in_channels=1'),
    ((1, 4, 64, 64), 'got 4 channels.*in_channels=4'),
])
def test_bad_input_names_the_problem_and_the_fix(shape, message):
    with pytest.raises(ValueError, match=message):
        RepViT('m0_6')(torch.rand(*shape))


@pytest.mark.parametrize('hw', [(1, 1), (8, 13), (31, 31)])
def test_inputs_below_32_pixels_work(hw):
    # Stride-2 3x3 convs with padding 1 map n to ceil(n / 2) >= 1, so there
    # is no minimum size; the outputs are just 1x1 at the deepest stages.
    model = RepViT('m0_6', in_channels=1).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 1, *hw))
    assert [tuple(o.shape[2:]) for o in outs] == [
        (downsampled(hw[0], k), downsampled(hw[1], k)) for k in (2, 3, 4, 5)]
