# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import math

import pytest
import torch
import torch.nn as nn
from helpers import randomize
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepvit import RepViT
from mmrepvit.models.layers import Conv2dBN, RepVGGDW, RepViTBlock

ARCHES = ['m0_6', 'm0_9', 'm1_0', 'm1_1', 'm1_5', 'm2_3']

# Reference section 2 (features only, millions, 3 decimals): training / fused.
PARAMS = {
    'm0_6': (2.166, 2.147), 'm0_9': (4.718, 4.682), 'm1_0': (6.403, 6.361),
    'm1_1': (7.775, 7.731), 'm1_5': (13.616, 13.537),
    'm2_3': (22.404, 22.286)
}
# Reference section 3.
DET_TAPS = {'m0_6': (1, 4, 14, 17), 'm0_9': (2, 6, 22, 26),
            'm1_0': (2, 6, 22, 26), 'm1_1': (2, 6, 20, 24),
            'm1_5': (4, 10, 36, 42), 'm2_3': (6, 14, 50, 54)}
SEG_TAPS = {'m0_6': [2, 5, 15, 17], 'm0_9': [3, 7, 23, 26],
            'm1_0': [3, 7, 23, 26], 'm1_1': [3, 7, 21, 24],
            'm1_5': [5, 11, 37, 42], 'm2_3': [7, 15, 51, 54]}
WIDTHS = {'m0_6': [40, 80, 160, 320], 'm0_9': [48, 96, 192, 384],
          'm1_0': [56, 112, 224, 448], 'm1_1': [64, 128, 256, 512],
          'm1_5': [64, 128, 256, 512], 'm2_3': [80, 160, 320, 640]}


def count(model):
    return sum(p.numel() for p in model.parameters())


def down(n, times):
    # A 3x3 stride-2 conv with padding 1 maps n to ceil(n / 2).
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


@pytest.mark.parametrize('arch', ARCHES)
def test_default_taps_shapes_and_widths(arch):
    model = RepViT(arch).eval()
    assert model.out_indices == DET_TAPS[arch]
    assert model.seg_taps == SEG_TAPS[arch]
    assert model.out_channels == WIDTHS[arch]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(WIDTHS[arch], (4, 8, 16, 32))
    ]
    assert [f['reduction'] for f in model.feature_info] == [4, 8, 16, 32]


@pytest.mark.parametrize('hw', [(97, 131), (32, 32), (33, 65)])
def test_odd_input_sizes(hw):
    model = RepViT('m0_6', out_indices=SEG_TAPS['m0_6']).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *hw))
    # stem /4 (two stride-2 convs), then one stride-2 per later stage.
    assert [tuple(o.shape[2:]) for o in outs] == [
        (down(hw[0], k), down(hw[1], k)) for k in (2, 3, 4, 5)
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
    # Reference section 1: C -> R.
    table = {40: 8, 48: 16, 56: 16, 64: 16, 80: 24, 96: 24, 112: 32, 128: 32,
             160: 40, 192: 48, 224: 56, 256: 64, 320: 80, 384: 96, 448: 112,
             512: 128, 640: 160}
    from mmrepvit.models.layers import SqueezeExcite
    for c, r in table.items():
        assert SqueezeExcite(c).fc1.out_channels == r


def test_custom_arch_dict():
    arch = dict(channels=[16, 16, 32, 32], se=[1, 0, 0, 1],
                strides=[1, 1, 2, 1])
    model = RepViT(arch).eval()
    assert model.arch_name == 'custom'
    assert model.out_indices == (1, 4)   # det taps: stage ends minus one, last
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 16), (1, 32, 8, 8)]


def test_bad_arguments():
    # An unknown arch name lists the valid ones.
    with pytest.raises(ValueError, match=r"Unknown RepViT arch 'm9'.*'m0_6'"):
        RepViT('m9')
    # arch must be a str or a dict.
    with pytest.raises(TypeError, match='arch must be a str or a dict'):
        RepViT(3)
    # A custom dict needs exactly channels, se and strides.
    with pytest.raises(ValueError, match=r"missing \['strides'\]"):
        RepViT(dict(channels=[16], se=[0]))
    # Lists of different lengths.
    with pytest.raises(ValueError, match='equal length'):
        RepViT(dict(channels=[16, 16], se=[0], strides=[1, 1]))
    # Width may change only at stride-2 blocks.
    with pytest.raises(ValueError, match='only at stride-2 blocks'):
        RepViT(dict(channels=[16, 32], se=[0, 0], strides=[1, 1]))
    # Strides are 1 or 2, and the first block has stride 1.
    with pytest.raises(ValueError, match='strides must be 1 or 2'):
        RepViT(dict(channels=[16, 32], se=[0, 0], strides=[1, 3]))
    with pytest.raises(ValueError, match='first block must have stride 1'):
        RepViT(dict(channels=[16, 32], se=[0, 0], strides=[2, 2]))
    # se flags are 0/1.
    with pytest.raises(ValueError, match='se flags must be 0 or 1'):
        RepViT(dict(channels=[16], se=[2], strides=[1]))
    # out_indices must index features (m0_6 has 18 entries: -18..17).
    with pytest.raises(IndexError, match=r'out_indices entry 18.*-18\.\.17'):
        RepViT('m0_6', out_indices=(1, 18))
    with pytest.raises(IndexError, match='out_indices entry -19'):
        RepViT('m0_6', out_indices=-19)
    with pytest.raises(TypeError, match='out_indices must be'):
        RepViT('m0_6', out_indices=[])
    # frozen_stages in [-1, number of stages].
    with pytest.raises(ValueError, match=r'frozen_stages must be in \[-1, 4\]'):
        RepViT('m0_6', frozen_stages=5)
    with pytest.raises(ValueError, match='frozen_stages'):
        RepViT('m0_6', frozen_stages=-2)
    with pytest.raises(ValueError, match='drop_path_rate'):
        RepViT('m0_6', drop_path_rate=1.0)
    with pytest.raises(KeyError, match="Unknown norm layer type 'Nope'"):
        RepViT('m0_6', norm_cfg=dict(type='Nope'))


def test_negative_and_int_out_indices():
    model = RepViT('m0_6', out_indices=(-1, 0, 2)).eval()
    assert model.out_indices == (17, 0, 2)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    # Returned in the order asked for.
    assert [tuple(o.shape) for o in outs] == [(1, 320, 2, 2), (1, 40, 16, 16),
                                             (1, 40, 16, 16)]
    assert RepViT('m0_6', out_indices=5).out_indices == (5, )


@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen):
    model = RepViT('m0_6', frozen_stages=frozen)
    model.train()
    ends = model.stage_ends   # m0_6: stem 0, stages end at 2, 5, 15, 17
    assert ends == [0, 2, 5, 15, 17]
    last_frozen = ends[frozen] if frozen >= 0 else -1
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


def test_drop_path():
    # Randomised so that the residual branches (zero-initialised) are live.
    model = randomize(RepViT('m0_6', drop_path_rate=0.2))
    rates = [b.channel_mixer.drop_path_rate for b in model.features[1:]]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates)
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


# ------------------------------------------------------------ re-parameterising
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


@pytest.mark.parametrize('arch', ['m0_6', 'm1_5'])
def test_network_fusion_float32(arch):
    model = randomize(RepViT(arch), seed=0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    # The fused weights are computed in float64 and rounded once to float32,
    # but the two float32 networks still round differently in every one of
    # the ~100-200 convolutions; errors compound with depth. 1e-4 relative to
    # the largest activation bounds what we see (~1e-6 on m0_6, ~1e-5 on
    # deeper arches) and matches the official fusion's 1e-6..1e-4.
    for a, b in zip(before, after):
        assert rel_err(a, b) < 1e-4


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
