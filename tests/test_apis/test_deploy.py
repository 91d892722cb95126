# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""mmrepvit.apis and tools/deploy: fused weights loading into either form,
the whole-model fuse (with channels_last), and the ONNX export with its
onnxruntime parity check. End to end on trained demo models (test.py,
dist_test.sh, the inferencers): tests/test_demo.py."""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.runner.checkpoint import load_state_dict as mmengine_load

from helpers import REPO, randomize, run_tool
from mmrepvit import RepViT, apis
from mmrepvit.apis import build_model, export_onnx, exported_part, fuse_model

DET = str(REPO / 'configs/det/repvit_m0_6_maskrcnn_demo.py')
SEG = str(REPO / 'configs/seg/repvit_m0_6_fpn_demo.py')


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


class Holder(nn.Module):
    """A RepViT under the ``backbone.`` prefix, as in a detector."""

    def __init__(self, deploy=False):
        super().__init__()
        self.backbone = RepViT('m0_6', deploy=deploy)


def trained_and_fused():
    """A training-form Holder with random weights and BN statistics, and
    its fused state dict."""
    model = Holder()
    randomize(model.backbone, seed=1).eval()
    fused = Holder()
    fused.load_state_dict(model.state_dict())
    fused.eval().backbone.switch_to_deploy()
    return model, fused.state_dict()


def torch_load(model, state):
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize('loader', [torch_load, mmengine_load])
def test_fused_weights_switch_a_training_form_backbone(loader):
    model, fused_state = trained_and_fused()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.backbone(x)
    target = Holder()
    assert not target.backbone.deploy
    # Strict: every fused tensor lands in the deploy form built on the way.
    loader(target, fused_state)
    assert target.backbone.deploy
    assert target.state_dict().keys() == fused_state.keys()
    for k, v in target.state_dict().items():
        assert torch.equal(v, fused_state[k]), k
    with torch.no_grad():
        out = target.eval().backbone(x)
    for a, b in zip(out, ref):
        assert rel_err(a, b) < 1e-4   # float32 fusion rounding


@pytest.mark.parametrize('loader', [torch_load, mmengine_load])
def test_training_weights_fuse_into_a_deploy_form_backbone(loader):
    model, fused_state = trained_and_fused()
    target = Holder(deploy=True)
    loader(target, model.state_dict())
    assert target.backbone.deploy
    for k, v in target.state_dict().items():
        # Fused in float64 on the way in: the same as fusing first.
        assert torch.equal(v, fused_state[k]), k


def test_incomplete_training_weights_into_deploy_form_raise():
    model, _ = trained_and_fused()
    state = model.state_dict()
    del state['backbone.features.3.token_mixer.0.bn.weight']
    # Fusing what is missing would silently use random weights: refused,
    # even by a non-strict load.
    with pytest.raises(ValueError, match=r'backbone: the checkpoint holds '
                       r'training-form RepViT weights that do not fit .* 1 '
                       r"missing \(e.g. \['features.3.token_mixer.0.bn"):
        Holder(deploy=True).load_state_dict(state, strict=False)


def test_training_after_a_fused_load_raises():
    _, fused_state = trained_and_fused()
    target = Holder()
    target.load_state_dict(fused_state)
    target.eval()                      # inference is what it is for
    # The optimizer of a Runner is built before the load, so it would hold
    # the replaced parameters: training must not start silently.
    with pytest.raises(RuntimeError, match=(
            r'This RepViT switched to its fused \(deploy\) form to load a '
            r'fused checkpoint.*To fine-tune, load the training-form '
            r'checkpoint; to train the fused network, set '
            r'model.backbone.deploy=True')):
        target.train()
    # A backbone built in deploy form trains as it always did.
    Holder(deploy=True).train()


def test_weights_of_neither_form_leave_the_backbone_alone():
    target = Holder()
    result = target.load_state_dict({}, strict=False)
    assert not target.backbone.deploy and result.missing_keys


def test_fuse_model_with_channels_last_predicts_the_same():
    model = build_model(DET)
    randomize(model.backbone, seed=2)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = model.extract_feat(x)
        assert fuse_model(model, channels_last=True) is model
        out = model.extract_feat(x)
    assert model.backbone.deploy and not model.training
    conv = model.backbone.features[0][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(out, ref):
        # mmcv's RoIAlign reads NCHW memory: the heads get NCHW features.
        assert a.is_contiguous()
        assert rel_err(a, b) < 1e-4
    hooks = model._channels_last_hooks
    fuse_model(model, channels_last=True)   # a second call changes nothing
    assert model._channels_last_hooks is hooks


def test_fuse_model_needs_a_repvit():
    with pytest.raises(ValueError, match='Sequential has no RepViT backbone'):
        fuse_model(nn.Sequential(nn.Conv2d(3, 8, 3)))


@pytest.mark.parametrize('config,part,labels,outputs', [
    (None, 'backbone', False, [(40, 4), (80, 8), (160, 16), (320, 32)]),
    (DET, 'features', False, [4, 8, 16, 32, 64]),   # neck width: config
    (SEG, 'features', False, [4, 8, 16, 32]),       # a segmentor's FPN
    (SEG, 'segmentor', False, [(5, 1)]),
    (SEG, 'segmentor', True, [(None, 1)]),
])
def test_export_onnx_parity_at_two_sizes(config, part, labels, outputs,
                                         tmp_path):
    import onnx
    import onnxruntime as ort
    model = RepViT('m0_6') if config is None else build_model(config)
    if part == 'features':
        outputs = [(model.neck.out_channels, s) for s in outputs]
    randomize(model if config is None else model.backbone, seed=3)
    out = tmp_path / 'model.onnx'
    report = export_onnx(model, str(out), (64, 96), part=part,
                         labels=labels)
    assert report.part == part and report.opset == 17
    # Parity at the export size and at another batch and size (dynamic).
    assert list(report.max_rel_diff) == [(1, 3, 64, 96), (2, 3, 96, 160)]
    assert all(d <= 1e-4 for d in report.max_rel_diff.values())
    onnx.checker.check_model(str(out), full_check=True)
    assert onnx.load(str(out)).opset_import[0].version == 17
    assert not any(m.deploy for m in model.modules()
                   if isinstance(m, RepViT))
    session = ort.InferenceSession(str(out),
                                   providers=['CPUExecutionProvider'])
    (name, ) = [i.name for i in session.get_inputs()]
    assert session.get_inputs()[0].shape == ['batch', 3, 'height', 'width']
    results = session.run(None, {name: np.zeros((3, 3, 128, 64), 'float32')})
    assert len(results) == len(outputs)
    for result, (channels, stride) in zip(results, outputs):
        if channels is None:     # a label map
            assert result.shape == (3, 128, 64) and result.dtype == np.int64
        else:
            assert result.shape == (3, channels, -(-128 // stride),
                                    -(-64 // stride))


def run_export(monkeypatch, *args):
    """tools/deploy/export_onnx.py ARGS, in this process. It reads the
    checkpoint file at most once, whatever the path (arch, config, config
    with --backbone-only and a whole or a bare checkpoint), and once when
    it succeeds."""
    import mmrepvit.utils
    import mmrepvit.utils.checkpoint
    reads = []

    def counted(filename, *args, **kwargs):
        reads.append(filename)
        return read_checkpoint(filename, *args, **kwargs)
    read_checkpoint = mmrepvit.utils.read_checkpoint
    # the tool reads it (backbones), or utils.extract_state_dict (whole
    # models, through apis.model.init_model)
    for module in (mmrepvit.utils, mmrepvit.utils.checkpoint):
        monkeypatch.setattr(module, 'read_checkpoint', counted)
    try:
        run_tool(monkeypatch, 'tools/deploy/export_onnx.py', *args)
    finally:
        assert len(reads) <= 1, reads
    assert len(reads) == 1, reads


def test_export_tool_refuses_a_graph_that_does_not_generalise(
        monkeypatch, tmp_path, capsys):
    model = build_model(SEG)
    ckpt = tmp_path / 'seg.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    # Without the dynamic upsampling, mmseg's Upsample bakes the export
    # size into the graph: right at that size, wrong at the second one.
    from mmrepvit.apis import onnx_export
    monkeypatch.setattr(onnx_export, '_dynamic_upsampling',
                        lambda model: contextlib.nullcontext())
    out = tmp_path / 'seg.onnx'
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, SEG, ckpt, out, '--shape', 64, 64)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert 'REFUSED: onnxruntime differs from PyTorch by' in err
    assert '1x3x64x64: ' in err and '2x3x96x128: ' in err
    assert not out.exists() and not (tmp_path / 'seg.onnx.tmp').exists()


def test_export_tool_bare_backbone_from_an_arch_name(monkeypatch, tmp_path,
                                                     capsys):
    ckpt = tmp_path / 'backbone.pth'
    torch.save(randomize(RepViT('m0_6')).state_dict(), ckpt)
    out = tmp_path / 'backbone.onnx'
    run_export(monkeypatch, 'm0_6', ckpt, out, '--shape', 64, 64)
    printed = capsys.readouterr().out
    assert 'exported the backbone (opset 17, outputs stage0, stage1, ' \
        'stage2, stage3)' in printed
    assert 'input 2x3x96x128: max relative difference' in printed
    assert out.is_file()


def test_export_onnx_copies_a_model_only_to_fuse_or_convert_it(tmp_path):
    from mmrepvit.apis.fuse import deploy_copy
    model = randomize(RepViT('m0_6'), seed=3).eval().switch_to_deploy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert deploy_copy(model) is model   # fused, eval, float32, CPU
    report = export_onnx(model, str(tmp_path / 'b.onnx'), (64, 64))
    assert all(d <= 1e-4 for d in report.max_rel_diff.values())
    assert not model.training and model.deploy
    state = model.state_dict()
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], v) for k, v in before.items())
    # anything else is exported from a fused float32 copy
    for other in (RepViT('m0_6', deploy=True),            # training mode
                  RepViT('m0_6', deploy=True).double().eval(),
                  RepViT('m0_6').eval()):                 # not fused
        form = other.training, other.deploy, next(other.parameters()).dtype
        copied = deploy_copy(other)
        assert copied is not other and not copied.training and copied.deploy
        assert next(copied.parameters()).dtype == torch.float32
        assert (other.training, other.deploy,
                next(other.parameters()).dtype) == form   # not changed


def test_export_in_place_never_asks_a_fused_load_to_train(tmp_path):
    # A segmentor whose backbone loaded fused weights refuses train(True);
    # fused and in eval mode, it is traced in place, and torch.onnx.export
    # sets train(False) and restores the mode after tracing.
    model, fused = build_model(SEG), build_model(SEG)
    randomize(fused.backbone, seed=4)
    fused.backbone.switch_to_deploy()
    model.load_state_dict(fused.state_dict())
    model.eval()
    assert model.backbone._fused_by_load
    assert apis.fuse.deploy_copy(model) is model
    report = export_onnx(model, str(tmp_path / 's.onnx'), (64, 64))
    assert report.part == 'segmentor'
    assert all(d <= 1e-4 for d in report.max_rel_diff.values())
    assert not any(m.training for m in model.modules())


def test_outputs_that_do_not_fit_the_model_are_refused():
    det = build_model(DET)
    levels = [(f'level{i}', 64) for i in range(5)]
    assert exported_part(levels, det, 'det.py', 'x.onnx') == 'features'
    # the number of levels is the neck's
    with pytest.raises(ValueError, match=r'x.onnx \(outputs level0, level1, '
                       r'level2, level3\) does not fit det.py, whose '
                       r'MaskRCNN gives level0, level1, level2, level3, '
                       r'level4'):
        exported_part(levels[:4], det, 'det.py', 'x.onnx')
    # so is their width (another model's export)
    with pytest.raises(ValueError, match='level0 has 256 channels, the '
                       'MaskRCNN of det.py 64'):
        exported_part([('level0', 256)] + levels[1:], det, 'det.py', 'x.onnx')
    # the backbone's stages: those out_indices asks for, as wide
    stages = [(f'stage{i}', c) for i, c in enumerate((40, 80, 160, 320))]
    assert exported_part(stages, det, 'det.py', 'x.onnx') == 'backbone'
    with pytest.raises(ValueError, match='stage3 has 512 channels'):
        exported_part(stages[:3] + [('stage3', 512)], det, 'det.py', 'x.onnx')
    with pytest.raises(ValueError, match='gives stage0, stage1, stage2, '
                       'stage3'):
        exported_part(stages[1:], det, 'det.py', 'x.onnx')
    # a file export_onnx.py did not write
    with pytest.raises(ValueError, match='not an export of'):
        exported_part([('output', None)], det, 'det.py', 'x.onnx')
    # logits as wide as the decode head's classes
    seg = build_model(SEG)
    with pytest.raises(ValueError, match='logits has 150 channels'):
        exported_part([('logits', 150)], seg, 'seg.py', 'x.onnx')
    # a segmentor's backbone + neck (its FPN has 4 levels)
    seg_levels = [(f'level{i}', seg.neck.out_channels) for i in range(4)]
    assert exported_part(seg_levels, seg, 'seg.py', 'x.onnx') == 'features'
    with pytest.raises(ValueError, match='EncoderDecoder gives level0, '
                       'level1, level2, level3'):
        exported_part(levels, seg, 'seg.py', 'x.onnx')


def test_export_names_the_stages_out_indices_asks_for(tmp_path):
    report = export_onnx(RepViT('m0_6', out_indices=(1, 3)),
                         str(tmp_path / 'b.onnx'), (64, 64))
    assert report.output_names == ['stage1', 'stage3']


def test_export_tool_fused_backbone_from_an_arch_name(monkeypatch, tmp_path,
                                                      capsys):
    """A fused backbone checkpoint builds the deploy form to load into."""
    model = randomize(RepViT('m0_6')).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
    ckpt = tmp_path / 'fused.pth'
    torch.save(model.switch_to_deploy().state_dict(), ckpt)
    out = tmp_path / 'backbone.onnx'
    run_export(monkeypatch, 'm0_6', ckpt, out, '--shape', 64, 64)
    assert 'exported the backbone' in capsys.readouterr().out
    import onnxruntime as ort
    session = ort.InferenceSession(str(out),
                                   providers=['CPUExecutionProvider'])
    for a, b in zip(session.run(None, {'input': x.numpy()}), reference):
        assert rel_err(torch.from_numpy(a), b) < 1e-4


def assert_exported_backbone(out, backbone):
    """The ONNX file OUT computes the four stage outputs of BACKBONE, in
    onnxruntime, at another size than its export's (1e-4 relative)."""
    import onnxruntime as ort
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        reference = backbone(x)
    session = ort.InferenceSession(str(out),
                                   providers=['CPUExecutionProvider'])
    results = session.run(None, {'input': x.numpy()})
    assert len(results) == len(reference) == 4
    for a, b in zip(results, reference):
        assert a.shape == tuple(b.shape) and \
            rel_err(torch.from_numpy(a), b) < 1e-4


def test_export_tool_backbone_of_a_dense_model_needs_its_config(
        monkeypatch, tmp_path, capsys):
    """The segmentor's backbone taps other stage ends than an arch's
    defaults: its checkpoint with an arch name is refused, and a backbone
    checkpoint with the config and --backbone-only is exported with the
    config's stage outputs."""
    model = build_model(SEG)
    randomize(model.backbone, seed=4)
    whole = tmp_path / 'seg.pth'
    torch.save({'state_dict': model.state_dict()}, whole)
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, 'm0_6', whole, tmp_path / 'x.onnx', '--prefix',
                   'backbone.')
    assert e.value.code == 2
    # --prefix does not make an arch name know the config's stage outputs
    assert ('holds a whole detector or segmentor: export its backbone with '
            'its config, which sets the stage outputs it was trained with '
            '(an arch name has only the default ones, with --prefix or not)'
            in capsys.readouterr().err)

    bare = tmp_path / 'backbone.pth'
    torch.save({'model': model.backbone.state_dict()}, bare)
    out = tmp_path / 'backbone.onnx'
    run_export(monkeypatch, SEG, bare, out, '--shape', 64, 64,
               '--backbone-only')
    assert_exported_backbone(out, model.backbone)


def test_fuse_checkpoint_with_a_deploy_config(tmp_path):
    """A config with backbone.deploy=True fuses a training checkpoint (and
    still knows a fused one)."""
    from mmengine.config import Config
    model = build_model(SEG)
    randomize(model.backbone, seed=5)
    ckpt = tmp_path / 'train.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    cfg = Config.fromfile(SEG)
    cfg.model.backbone.deploy = True
    assert apis.fuse_checkpoint(cfg, str(ckpt), str(tmp_path / 'f.pth'),
                                  (64, 64)) < 1e-4
    assert cfg.model.backbone.deploy        # the caller's config is kept
    fused = torch.load(tmp_path / 'f.pth', weights_only=True)['state_dict']
    target = build_model(SEG)
    target.load_state_dict(fused)
    assert target.backbone.deploy
    with pytest.raises(ValueError, match='f.pth is fused already'):
        apis.fuse_checkpoint(cfg, str(tmp_path / 'f.pth'),
                               str(tmp_path / 'g.pth'))


def test_whole_model_tools_name_a_bare_backbone_checkpoint(tmp_path):
    ckpt = tmp_path / 'backbone.pth'
    torch.save(RepViT('m0_6').state_dict(), ckpt)
    with pytest.raises(ValueError, match=r"No tensor of checkpoint .* "
                       r"matches the EncoderDecoder: its keys look like "
                       r"\['features.0.0.c.weight'.*It holds a bare RepViT "
                       r'backbone.*--backbone-only'):
        apis.load_model_weights(build_model(SEG), str(ckpt))


def test_export_tool_bad_inputs(monkeypatch, tmp_path, capsys):
    """Usage errors (exit status 2) that name the problem, nothing written."""
    def refused(config, ckpt, message):
        with pytest.raises(SystemExit) as e:
            run_export(monkeypatch, config, ckpt, tmp_path / 'x.onnx')
        assert e.value.code == 2
        assert message in capsys.readouterr().err

    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'<html>not found</html>')
    refused(DET, broken, 'is not a valid PyTorch checkpoint')
    resnet = tmp_path / 'resnet.py'
    resnet.write_text(f"_base_ = ['{DET}']\nmodel = dict(backbone=dict("
                      "_delete_=True, type='ResNet', depth=18))\n")
    refused(resnet, broken, "model.backbone is 'ResNet', not RepViT")
    # neither file nor arch
    refused('m9', broken, "'m9' is neither a config file nor a RepViT arch")
    refused('nopkg::x.py', broken, "Config 'nopkg::x.py' names the package")
    # a checkpoint of another model: MMEngine's key list, with the file
    det = tmp_path / 'det.pth'
    torch.save({'state_dict': build_model(DET).state_dict()}, det)
    refused(SEG, det, f"checkpoint '{det}' does not fit the EncoderDecoder "
            f'of this config: 37 not in the checkpoint (e.g. decode_head.'
            f'conv_seg.weight, ')
    assert not list(tmp_path.glob('*.onnx*'))


def test_export_tool_opset_and_output(monkeypatch, tmp_path, capsys):
    """An opset that torch or ONNX cannot export RepViT at, an output that
    is a folder or the checkpoint itself: usage errors, nothing written. An
    ONNX file is overwritten."""
    ckpt = tmp_path / 'backbone.pth'
    torch.save(RepViT('m0_6').state_dict(), ckpt)
    before = ckpt.read_bytes()
    out = tmp_path / 'x.onnx'
    for args, message in [
            # GELU needs Erf (opset 9); torch names its own range
            ([out, '--opset', 5], '--opset 5: the export failed ('),
            ([out, '--opset', 99], '--opset 99: the export failed ('),
            ([tmp_path], f"'{tmp_path}' is a directory"),
            ([ckpt], f"'{ckpt}' exists and is no ONNX file (a checkpoint?)"
             )]:
        with pytest.raises(SystemExit) as e:
            run_export(monkeypatch, 'm0_6', ckpt, *args, '--shape', 32, 32)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err
        assert '--opset' not in message or 'the default opset 17 is the ' \
            'tested one' in err
    assert not out.exists() and ckpt.read_bytes() == before
    for _ in range(2):
        run_export(monkeypatch, 'm0_6', ckpt, out, '--shape', 32, 32)
    assert out.is_file()


def test_export_onnx_unsupported_models():
    # A model type the exporter does not know, even with a RepViT inside.
    with pytest.raises(ValueError, match='Cannot export a Sequential'):
        export_onnx(nn.Sequential(RepViT('m0_6')), 'never.onnx')
    with pytest.raises(ValueError, match="Cannot export part 'segmentor' of "
                       'a RepViT'):
        export_onnx(RepViT('m0_6'), 'never.onnx', part='segmentor')
    with pytest.raises(ValueError, match='part must be one of'):
        export_onnx(RepViT('m0_6'), 'never.onnx', part='neck')
    with pytest.raises(ValueError, match='labels=True .* is for a whole '
                       'segmentor; this export is the backbone'):
        export_onnx(RepViT('m0_6'), 'never.onnx', labels=True)


@pytest.mark.parametrize('shape', [('0', '64'), ('-64', '64'), ('64', 'x')])
def test_export_tool_shape_is_positive(monkeypatch, tmp_path, capsys, shape):
    # A parser error before anything is read (the checkpoint need not exist).
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, 'm0_6', tmp_path / 'none.pth',
                   tmp_path / 'x.onnx', '--shape', *shape)
    assert e.value.code == 2
    assert 'H and W are positive integers' in capsys.readouterr().err


def test_export_any_positive_size(tmp_path):
    # Every stride-2 convolution pads: 1 x 1 exports (and generalises).
    report = export_onnx(RepViT('m0_6'), str(tmp_path / 'b.onnx'), (1, 1))
    assert list(report.max_rel_diff) == [(1, 3, 1, 1), (2, 3, 33, 65)]
    assert all(d <= 1e-4 for d in report.max_rel_diff.values())


@pytest.mark.parametrize('args,why', [
    (['m0_6'], 'this export is the backbone'),
    ([SEG, '--backbone-only'], 'this export is the backbone'),
    ([DET], 'is a MaskRCNN, exported as its backbone + neck'),
])
def test_export_tool_labels_need_a_whole_segmentor(monkeypatch, tmp_path,
                                                   capsys, args, why):
    # Refused before the checkpoint is read (it need not exist).
    config, *options = args
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, config, tmp_path / 'none.pth',
                   tmp_path / 'x.onnx', '--labels', *options)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert '--labels outputs the label map of a whole segmentor' in err
    assert why in err


def test_export_tool_prefix_with_a_config(monkeypatch, tmp_path, capsys):
    model = build_model(SEG)
    randomize(model.backbone, seed=6)
    # A whole model is loaded with its own keys: a prefix is refused.
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, SEG, tmp_path / 'none.pth',
                   tmp_path / 'x.onnx', '--prefix', 'backbone.')
    assert e.value.code == 2
    assert ('--prefix picks the backbone out of CHECKPOINT: it goes with an '
            'arch name or --backbone-only' in capsys.readouterr().err)
    # With --backbone-only it picks the backbone (here an mmpretrain
    # classifier's: backbone. beside head.) ...
    classifier = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {
        **{f'backbone.{k}': v for k, v in model.backbone.state_dict().items()},
        'head.fc.weight': torch.zeros(10, 320)}}, classifier)
    out = tmp_path / 'backbone.onnx'
    run_export(monkeypatch, SEG, classifier, out, '--shape', 64, 64,
               '--backbone-only', '--prefix', 'backbone')
    assert_exported_backbone(out, model.backbone)
    # ... and one that is not there is named, not ignored.
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, SEG, classifier, tmp_path / 'y.onnx',
                   '--backbone-only', '--prefix', 'foo.')
    assert e.value.code == 2
    assert ("checkpoint '{}': no key starts with prefix 'foo.'; its keys "
            "start with ['backbone.', 'head.']".format(classifier)
            in capsys.readouterr().err)
    assert not (tmp_path / 'y.onnx').exists()


def test_export_tool_prefix_help(monkeypatch, capsys):
    # The help says where --prefix applies, as the tool does it.
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch, '--help')
    assert e.value.code == 0
    help_text = ' '.join(capsys.readouterr().out.split())
    assert ('--prefix PREFIX with an arch name or --backbone-only: the key '
            'prefix of the backbone in CHECKPOINT, e.g. backbone. for an '
            'mmpretrain classifier (a whole detector or segmentor: give its '
            'config and --backbone-only, no prefix needed)' in help_text)


def test_export_tool_reads_package_configs(monkeypatch, tmp_path, capsys):
    # mmdet::/mmseg:: paths are configs as in the other tools; this one is
    # no RepViT model, so the config check is what answers (read only).
    with pytest.raises(SystemExit) as e:
        run_export(monkeypatch,
                   'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                   tmp_path / 'none.pth', tmp_path / 'x.onnx')
    assert e.value.code == 2
    assert "model.backbone is 'ResNet', not RepViT" in \
        capsys.readouterr().err


def test_build_model_is_quiet_and_keeps_the_logger_level():
    """build_model does not log MMEngine's report of every parameter's
    initialisation (about a thousand lines that buried what the export
    and fuse tools print), and leaves the logger as it found it."""
    from mmengine.logging import MMLogger

    from helpers import logged_messages
    with logged_messages() as logged:
        level = MMLogger.get_current_instance().level
        build_model(SEG)
        assert MMLogger.get_current_instance().level == level
    assert not [m for m in logged if 'init_weights' in m]
