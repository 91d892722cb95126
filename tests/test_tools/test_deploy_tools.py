# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""tools/deploy/test_onnx.py: the config's test loop with the exported part
computed by an ONNX file gives tools/test.py's metrics for an FP32 export,
on the demo configs, tiny generated data and seeded random weights.

Tolerance: the ONNX outputs differ from PyTorch's by ~1e-6 relative (float
rounding: fused weights, other kernels). A prediction can only change
where two classes' logits or two boxes' scores lie that close; on these
images none do, so the predictions are the same (asserted one by one in
``test_onnx_part_predicts_what_pytorch_does``) and the metrics, as the
metrics round them (0.01 for mIoU/aAcc in percent, 0.001 for COCO AP), are
identical: asserted within 1e-6, i.e. the same printed numbers."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import REPO, import_tool, run_tool
from mmrepvit.apis import (
    OnnxRunner,
    build_model,
    check_onnx_file,
    export_onnx,
    load_model_weights,
    onnx_record,
)

TOOL = 'tools/deploy/test_onnx.py'
CONFIGS = {'det': REPO / 'configs/det/repvit_m0_6_maskrcnn_demo.py',
           'seg': REPO / 'configs/seg/repvit_m0_6_fpn_demo.py'}
METRICS = {'det': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'],
           'seg': ['mIoU', 'aAcc', 'mAcc']}


def tiny_config(task, data, path):
    """A config inheriting the demo one, on the 2 tiny validation images,
    with data loading in this process."""
    loader = 'num_workers=0, persistent_workers=False'
    if task == 'det':
        root = f'{data}/'
        extra = (f"val_evaluator = dict(ann_file='{data}/annotations/"
                 f"instances_val.json')\ntest_evaluator = val_evaluator\n")
    else:
        root, extra = str(data), ''
    path.write_text(
        f"_base_ = ['{CONFIGS[task]}']\n"
        f"val_dataloader = dict({loader}, dataset=dict(data_root='{root}'))"
        f"\ntest_dataloader = val_dataloader\n" + extra)
    return path


@pytest.fixture(scope='module')
def deployed(demo_data, tmp_path_factory):
    """deployed(task, labels=False): the tiny config, a checkpoint of the
    seeded random model and its FP32 ONNX export (the segmentor whole, the
    detector's backbone + neck), each made once."""
    root = tmp_path_factory.mktemp('deployed')
    made = {}

    def get(task, labels=False):
        if (task, labels) not in made:
            cfg = tiny_config(task, demo_data / task, root / f'{task}.py')
            model = build_model(str(cfg), seed=0)
            ckpt = root / f'{task}.pth'
            torch.save({'state_dict': model.state_dict()}, ckpt)
            onnx = root / f'{task}{"_labels" if labels else ""}.onnx'
            # one parity check (the tests run it at 256 x 256)
            export_onnx(model, str(onnx), (64, 64), labels=labels,
                        check_shapes=[(1, 3, 64, 64)])
            made[task, labels] = SimpleNamespace(cfg=cfg, ckpt=ckpt,
                                                 onnx=onnx, root=root)
        return made[task, labels]

    return get


@pytest.fixture(scope='module')
def reference(deployed):
    """reference(task): tools/test.py's metrics on the same checkpoint."""
    metrics = {}

    def get(task):
        if task not in metrics:
            d = deployed(task)
            work = d.root / f'test_{task}'
            run([sys.executable, 'tools/test.py', d.cfg, d.ckpt,
                 '--work-dir', work], d.root / f'test_{task}.log')
            (path, ) = work.glob('*/*.json')
            metrics[task] = json.loads(path.read_text())
        return metrics[task]

    return get


def run(cmd, log):
    """Run ``cmd`` from the repository, its output to ``log``; returns the
    output after checking that it exits 0."""
    with open(log, 'w') as f:
        proc = subprocess.run([str(c) for c in cmd], cwd=REPO, stdout=f,
                              stderr=subprocess.STDOUT, timeout=600)
    text = Path(log).read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.mark.parametrize('task,backend', [('seg', 'onnxruntime'),
                                          ('seg', 'openvino'),
                                          ('det', 'onnxruntime')])
def test_fp32_onnx_gives_the_metrics_of_tools_test(deployed, reference,
                                                   task, backend, tmp_path):
    d = deployed(task)
    out = tmp_path / 'metrics.json'
    log = run([sys.executable, TOOL, d.cfg, d.ckpt, d.onnx, '--backend',
               backend, '--threads', 2, '--work-dir', tmp_path / 'work',
               '--out', out], tmp_path / 'test_onnx.log')
    # the ONNX file computed every batch (one image each)
    part = 'segmentor' if task == 'seg' else 'features'
    assert (f'Tested 2 images with {d.onnx} ({part}) in {backend} (fp32) '
            f'(2 ONNX runs in this process)') in log
    ours, theirs = json.loads(out.read_text()), reference(task)
    assert set(METRICS[task]) <= set(ours)
    for key in METRICS[task]:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    # printed as tools/test.py prints them
    first = METRICS[task][0]
    assert f'{first}: {theirs[first]:.4f}' in log


@pytest.mark.parametrize('task,labels', [('seg', False), ('seg', True),
                                         ('det', False)])
def test_onnx_part_predicts_what_pytorch_does(deployed, task, labels):
    """Image by image, in this process: what the tool patches in gives the
    predictions of the PyTorch model, the label map of a labels export
    included (the pipeline keeps the images' size here, where one-hot
    scores are exact)."""
    tool = import_tool(TOOL)
    d = deployed(task, labels)
    cfg = Config.fromfile(str(d.cfg))
    if labels:
        pipeline = cfg.test_dataloader.dataset.pipeline
        pipeline[:] = [t for t in pipeline if t.type != 'AlignResize']
    model = build_model(cfg)
    load_model_weights(model, str(d.ckpt))
    batches = list(Runner.build_dataloader(cfg.test_dataloader))
    assert len(batches) == 2
    with torch.no_grad():
        before = [model.test_step(b)[0] for b in batches]
    part, _ = check_onnx_file(str(d.onnx), model, str(d.cfg))
    assert part == ('segmentor' if task == 'seg' else 'features')
    runs = tool.use_onnx(model, part, OnnxRunner(str(d.onnx)), labels)
    with torch.no_grad():
        after = [model.test_step(b)[0] for b in batches]
    assert runs == [2]
    for a, b in zip(before, after):
        if task == 'seg':
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
            if not labels:
                diff = (a.seg_logits.data - b.seg_logits.data).abs().max()
                assert diff <= 1e-5 * a.seg_logits.data.abs().max()
        else:
            p, q = a.pred_instances, b.pred_instances
            assert len(p) == len(q) > 0
            assert torch.equal(p.labels, q.labels)
            assert torch.allclose(p.bboxes, q.bboxes, atol=1e-2)
            assert torch.allclose(p.scores, q.scores, atol=1e-4)


def test_a_segmentor_onnx_with_the_detector_config_is_refused(
        deployed, tmp_path, monkeypatch, capsys):
    seg, det = deployed('seg'), deployed('det')
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, TOOL, det.cfg, det.ckpt, seg.onnx,
                 '--work-dir', tmp_path / 'work')
    assert e.value.code == 2
    assert (f'{seg.onnx} (outputs logits) is a whole segmentor, but the '
            f'model of {det.cfg} (MaskRCNN) has no decode_head') in \
        capsys.readouterr().err


def recorded_as(path, out, **changes):
    """A copy of the ONNX file ``path`` whose record says ``changes``
    (None: no record, as files of older exports)."""
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    if changes.get('record', True) is not None:
        record = dict(json.loads(props['mmrepvit']), **changes)
        onnx.helper.set_model_props(proto, {'mmrepvit': json.dumps(record)})
    onnx.save(proto, str(out))
    return str(out)


def test_what_the_export_recorded_must_fit_the_model(deployed, tmp_path):
    """Another class count (logits: a dynamic axis) or another arch behind
    the same neck (the same names and shapes) do not show in the outputs:
    the file records them and they are compared."""
    seg, det = deployed('seg'), deployed('det')
    seg_model, det_model = build_model(str(seg.cfg)), build_model(
        str(det.cfg))
    classes = seg_model.decode_head.out_channels
    props = {p.key: p.value for p in onnx.load(str(seg.onnx)).metadata_props}
    assert json.loads(props['mmrepvit']) == onnx_record(seg_model) == dict(
        backbone='RepViT', widths=[40, 80, 160, 320], depths=[2, 3, 10, 2],
        stage_ends='before_downsample', out_indices=[0, 1, 2, 3],
        in_channels=3, classes=classes)
    assert check_onnx_file(str(seg.onnx), seg_model, 'seg.py') == (
        'segmentor', [('logits', None)])
    # a 3-class segmentor with detection taps
    other = recorded_as(seg.onnx, tmp_path / 'x.onnx', classes=3,
                        stage_ends='before_pre_block')
    with pytest.raises(ValueError, match=(
            r'x.onnx \(outputs logits\) was exported from another model '
            r'than the EncoderDecoder of seg.py: stage_ends before_pre_block '
            r"\(the config's: before_downsample\); classes 3 \(the "
            rf"config's: {classes}\)\. Give the config it was exported "
            r'from')):
        check_onnx_file(other, seg_model, 'seg.py')
    # an m0_9 behind the detector's FPN: the same five 256-channel levels
    other = recorded_as(det.onnx, tmp_path / 'y.onnx',
                        widths=[48, 96, 192, 384], depths=[3, 4, 16, 3])
    with pytest.raises(ValueError, match=(
            r"MaskRCNN of det.py: widths \[48, 96, 192, 384\] \(the "
            r"config's: \[40, 80, 160, 320\]\); depths \[3, 4, 16, 3\]")):
        check_onnx_file(other, det_model, 'det.py')
    # a file without a record (older exports) is matched by its outputs
    old = recorded_as(seg.onnx, tmp_path / 'z.onnx', record=None)
    assert check_onnx_file(old, seg_model, 'seg.py')[0] == 'segmentor'
    # and a file that is no ONNX file says so
    text = tmp_path / 'text.onnx'
    text.write_text('not a model')
    with pytest.raises(ValueError, match='text.onnx is not an ONNX file'):
        check_onnx_file(str(text), seg_model, 'seg.py')


def test_an_onnx_of_another_class_count_is_refused(deployed, tmp_path,
                                                   monkeypatch, capsys):
    d = deployed('seg')
    other = recorded_as(d.onnx, tmp_path / 'x.onnx', classes=3)
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, TOOL, d.cfg, d.ckpt, other, '--work-dir',
                 tmp_path / 'w')
    assert e.value.code == 2
    assert (f'{other} (outputs logits) was exported from another model '
            f'than the EncoderDecoder of {d.cfg}: classes 3') in \
        capsys.readouterr().err


@pytest.mark.parametrize('args,message', [
    (['missing.onnx'], "ONNX file 'missing.onnx' does not exist"),
    (['{text}'], 'text.onnx is not an ONNX file'),
    (['{text}', '--backend', 'openvino'], 'text.onnx is not an ONNX file'),
    (['{onnx}', '--backend', 'onnxruntime', '--precision', 'bf16'],
     "backend 'onnxruntime' with precision 'bf16': choose"),
    (['{onnx}', '--backend', 'tensorrt'], "invalid choice: 'tensorrt'"),
])
def test_bad_arguments_are_usage_errors(deployed, monkeypatch, capsys, args,
                                        message, tmp_path):
    d = deployed('seg')
    text = tmp_path / 'text.onnx'
    text.write_text('not a model')
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, TOOL, d.cfg, d.ckpt,
                 *[a.format(onnx=d.onnx, text=text) for a in args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_checkpoint_is_a_usage_error(deployed, monkeypatch,
                                               capsys):
    d = deployed('seg')
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, TOOL, d.cfg, 'none.pth', d.onnx)
    assert e.value.code == 2
    assert "checkpoint 'none.pth' does not exist" in capsys.readouterr().err


def test_reparameterize_check_size_must_be_positive(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, 'tools/deploy/reparameterize.py',
                 REPO / 'configs/seg/repvit_m0_6_fpn_demo.py', 'a.pth',
                 'b.pth', '--check-size', '0', '64')
    assert e.value.code == 2
    assert "argument --check-size: expected a positive size, got '0'" in \
        capsys.readouterr().err


def test_reparameterize_refusals_are_usage_errors(deployed, tmp_path,
                                                  monkeypatch, capsys):
    d = deployed('seg')

    def reparameterize(ckpt, out):
        run_tool(monkeypatch, 'tools/deploy/reparameterize.py', d.cfg,
                 ckpt, out, '--check-size', '32', '32')

    fused = tmp_path / 'new' / 'fused.pth'   # its folder is made
    reparameterize(d.ckpt, fused)
    assert 'max relative difference' in capsys.readouterr().out
    missing = tmp_path / 'none.pth'
    for ckpt, message in [(fused, f'{fused} is fused already'),
                          (missing, f"Checkpoint file '{missing}' does not "
                           f'exist')]:
        with pytest.raises(SystemExit) as e:
            reparameterize(ckpt, tmp_path / 'again.pth')
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'again.pth').exists()
    # writing over the input, or into a folder, is refused before reading
    before = fused.read_bytes()
    for out, message in [(fused, f"'{fused}' is the input '{fused}'"),
                         (tmp_path, f"'{tmp_path}' is a directory")]:
        with pytest.raises(SystemExit) as e:
            reparameterize(fused, out)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert fused.read_bytes() == before
