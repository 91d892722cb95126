# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""mmrepvit.utils.benchmark: MAC counts of tasks, the subjects, the forms
and the tables (their shape, not timings)."""
import numpy as np
import pytest
import torch
from torch.utils.benchmark.utils.common import Measurement, TaskSpec

from helpers import REPO
from mmrepvit import switch_to_deploy
from mmrepvit.utils import benchmark as bm
from mmrepvit.utils import benchmark_tables as bt
from mmrepvit.utils.config import load_config

SEG_DEMO = REPO / 'configs' / 'seg' / 'repvit_m0_6_fpn_demo.py'


def benchmark(subjects, forms, tasks=('forward', ), size=(32, 32), **kw):
    """One quick round of run_benchmark: its rows and its notes."""
    notes = []
    rows = bm.run_benchmark(subjects, forms, tasks, [1], [size], [1],
                            warmup=0, min_run_time=0.001, rounds=1,
                            log=notes.append, **kw)
    return rows, [n.split('note: ')[1] for n in notes if 'note: ' in n]


def test_flop_analyzer_counts_as_get_model_complexity_info():
    from mmengine.analysis import get_model_complexity_info
    model = bm.Subject.of('m0_6').build()
    x = torch.randn(1, 3, 64, 64)
    theirs = get_model_complexity_info(model, inputs=(x, ), show_table=False,
                                       show_arch=False)
    assert bm.flop_analyzer(model, x).total() == theirs['flops'] > 0
    assert model.forward.__self__ is model   # the swap is undone


def test_config_macs_by_module():
    """A segmentor's predict is counted in mode='tensor' on the
    preprocessed image: its backbone's share is what the backbone alone
    costs on that image, and the neck and head are counted too."""
    subject = bm.Subject.of(load_config(str(SEG_DEMO)))
    assert subject.name == 'RepViT-M0.6 EncoderDecoder'
    model = subject.build()
    data = subject.inputs(model, 1, (64, 64))
    analyzer = bm.flop_analyzer(model, data, 'predict')
    parts = analyzer.by_module()
    direct = bm.flop_analyzer(model.backbone, data['inputs']).total()
    assert parts['backbone'] == direct > 0
    assert parts['neck'] > 0 and parts['decode_head'] > 0
    # MMSegmentation calls decode_head.forward() directly: the head's own
    # upsampling lands outside every child, in the total only (0.1%).
    rest = analyzer.total() - sum(parts[k] for k in ('backbone', 'neck',
                                                     'decode_head'))
    assert 0 < rest < 0.01 * analyzer.total()
    features = bm.flop_analyzer(model, data, 'features').total()
    assert features == direct + parts['neck']
    assert bm.flop_analyzer(model, data, 'backbone').total() == direct


def test_benchmark_table_structure():
    subjects = [bm.Subject.of('m0_6'), bm.Subject.of('resnet50')]
    assert [s.name for s in subjects] == ['RepViT-M0.6', 'ResNet-50']
    assert [s.baseline for s in subjects] == [False, True]
    rows, notes = benchmark(subjects,
                            ['training', 'deploy', 'deploy+channels_last'])
    # ResNet-50 has nothing to fuse: no deploy row; its deploy+channels_last
    # is its channels_last form.
    assert [(r.subject, r.form) for r in rows] == [
        ('RepViT-M0.6', 'training'), ('RepViT-M0.6', 'deploy'),
        ('RepViT-M0.6', 'deploy+channels_last'), ('ResNet-50', 'training'),
        ('ResNet-50', 'channels_last')] and not notes
    assert all(r.median_ms > 0 and r.macs > 0 for r in rows)
    assert rows[1].macs < rows[0].macs   # fused: no BN, no 1x1 branches
    lines = bt.markdown_table(rows).splitlines()
    head = [c.strip() for c in lines[0].strip('|').split('|')]
    assert head == ['model', 'form', 'input', 'threads', 'median ms',
                    'IQR ms', 'x training', 'x ResNet-50', 'GMAC/s']
    assert lines[1] == '|' + '---|' * len(head)
    cells = [[c.strip() for c in line.strip('|').split('|')]
             for line in lines[2:]]
    assert len(cells) == len(rows) and all(len(c) == len(head) for c in cells)
    assert cells[0][:4] == ['RepViT-M0.6', 'training', '1x3x32x32', '1']
    assert cells[0][6] == '1.00' and cells[3][6:8] == ['1.00', '1.00']
    assert all(float(c[-1]) > 0 for c in cells)


def test_a_new_form_is_one_entry(monkeypatch):
    """Another path (OpenVINO, INT8...) is one more entry in FORMS."""
    calls = []

    def traced(model, inputs, task):
        scripted = torch.jit.trace(model, inputs, strict=False)
        return lambda: calls.append(scripted(inputs))

    monkeypatch.setitem(bm.FORMS, 'traced', (traced, True))
    rows, _ = benchmark([bm.Subject.of('m0_6')], ['traced'], with_macs=False)
    assert [r.form for r in rows] == ['traced'] and calls


def fused_m0_6(batch=1, size=(64, 64)):
    """A fused RepViT-M0.6, a seeded random input and its stage outputs."""
    subject = bm.Subject.of('m0_6')
    model = subject.build()
    switch_to_deploy(model)
    x = subject.inputs(model, batch, size)
    with torch.no_grad():
        return model, x, [t.numpy() for t in model(x)]


def rel_error(ours, theirs):
    """The largest relative error of an output: the norm of the difference
    over the norm of PyTorch's output."""
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    return max(np.linalg.norm(o - t) / np.linalg.norm(t)
               for o, t in zip(ours, theirs))


@pytest.mark.parametrize('form', ['onnxruntime', 'openvino'])
def test_onnx_forms_run_what_pytorch_computes(form):
    """The onnxruntime and OpenVINO forms time the exported deploy form:
    their timed call returns the fused backbone's stage outputs (within
    1e-4 relative, the exporter's parity tolerance)."""
    model, x, theirs = fused_m0_6(2, (64, 96))
    make, fused = bm.FORMS[form]
    ours = make(model, x, 'forward')()
    assert fused and len(ours) == len(theirs) == 4
    for o, t in zip(ours, theirs):
        assert o.shape == t.shape
        assert np.abs(o - t).max() <= 1e-4 * np.abs(t).max()


@pytest.mark.parametrize('form', bm.CPU_FORMS)
def test_onnx_forms_leave_out_a_model_without_a_repvit(form):
    """A model without a RepViT has no export: left out with a note."""
    rows, notes = benchmark([bm.Subject.of('resnet50')], [form],
                            with_macs=False)
    assert rows == [] and notes == [
        f"ResNet-50, {form}: does not apply to the 'forward' task on cpu"]


@pytest.mark.parametrize('form, backend', [
    ('onnxruntime+int8', 'onnxruntime'), ('openvino+int8', 'openvino')])
def test_int8_forms_run_a_quantized_file(monkeypatch, form, backend):
    """The INT8 forms run the QDQ file of quantize_onnx (every convolution
    takes a quantized input: QuantizeLinear, DequantizeLinear, Conv) in
    their backend; calibrated on the
    input itself, the stage outputs are within 10% (relative, norm) of
    PyTorch's float ones."""
    import onnx
    runs, runner = [], bm.apis.OnnxRunner

    def recorded(path, backend, *args, **kwargs):
        nodes = onnx.load(path).graph.node
        made_by = {o: n.op_type for n in nodes for o in n.output}
        convs = [made_by.get(n.input[0]) for n in nodes if n.op_type == 'Conv']
        runs.append((backend, convs))
        return runner(path, backend, *args, **kwargs)

    monkeypatch.setattr(bm.apis, 'OnnxRunner', recorded)
    model, x, theirs = fused_m0_6()
    ours = bm.FORMS[form][0](model, x, 'forward')()
    [(ran, convs)] = runs   # what makes each Conv's input
    assert ran == backend and convs and set(convs) == {'DequantizeLinear'}
    assert rel_error(ours, theirs) < 0.1


def test_openvino_bf16_form_where_the_cpu_has_bf16(tmp_path):
    """Where OpenVINO runs bfloat16 on this CPU (AMX or AVX-512 BF16) the
    bf16 form is within 2% (relative, norm) of PyTorch's float32; elsewhere
    it does not apply."""
    model, x, theirs = fused_m0_6()
    path = str(tmp_path / 'm0_6.onnx')
    bm.apis.export_onnx(model, path, (64, 64))
    try:
        bm.apis.OnnxRunner(path, 'openvino', 'bf16')
        has_bf16 = True
    except ValueError:   # no AMX or AVX-512 BF16: OpenVINO would run f32
        has_bf16 = False
    fn = bm.FORMS['openvino+bf16'][0](model, x, 'forward')
    assert (fn is not None) == has_bf16
    if has_bf16:
        # above float32's error (1e-7 here): it really runs bfloat16
        assert 1e-4 < rel_error(fn(), theirs) < 2e-2


def test_openvino_bf16_form_without_bf16_does_not_apply(monkeypatch):
    """On a CPU without bfloat16 (the runner refuses) the bf16 form is left
    out with the benchmark's note, not timed in float32."""
    def no_bf16(path, backend, precision, *args, **kwargs):
        raise ValueError('OpenVINO runs f32, not bf16, on this CPU')

    monkeypatch.setattr(bm.apis, 'OnnxRunner', no_bf16)
    rows, notes = benchmark([bm.Subject.of('m0_6')], ['openvino+bf16'],
                            size=(64, 64), with_macs=False)
    assert rows == [] and notes == [
        "RepViT-M0.6, openvino+bf16: does not apply to the 'forward' task "
        "on cpu"]


def test_float16_forms_are_cuda_only():
    """Off CUDA the float16 autocast forms are left out with a note, not
    run in float32 under their name (tests/test_cuda.py runs them)."""
    rows, notes = benchmark([bm.Subject.of('m0_6')],
                            ['deploy', *bm.CUDA_AMP_FORMS], with_macs=False)
    assert [r.form for r in rows] == ['deploy']
    assert notes == [f"RepViT-M0.6, {form}: does not apply to the 'forward' "
                     f"task on cpu" for form in bm.CUDA_AMP_FORMS]


def test_training_step_in_the_unfused_forms_only():
    """A training step is timed in the training and channels_last forms,
    the model in training mode, its gradients cleared after each step; the
    fused forms are inference only, left out with a note."""
    subject = bm.Subject.of(load_config(str(SEG_DEMO)))
    rows, notes = benchmark([subject], ['channels_last', 'deploy'],
                            ['train', 'forward'], (64, 64))
    assert [(r.form, r.task, r.macs) for r in rows] == [
        ('channels_last', 'train', None)]   # a training step: no MACs
    assert notes == [
        "RepViT-M0.6 EncoderDecoder, deploy: does not apply to the 'train' "
        "task on cpu", "RepViT-M0.6 EncoderDecoder: no 'forward' task"]
    model = subject.build().train()
    step = bm.FORMS['channels_last'][0](
        model, subject.inputs(model, 1, (64, 64), training=True), 'train')
    grads = []
    next(model.backbone.parameters()).register_hook(grads.append)
    step()
    assert len(grads) == 1   # backward reached the backbone
    assert all(p.grad is None for p in model.parameters())


def fake_row(subject, form, size, ms, task='forward', gmacs=None,
             baseline=False):
    m = Measurement(1, [ms / 1e3], TaskSpec('fn()', 'pass'))
    return bt.Row(subject, form, task, f'1x3x{size[0]}x{size[1]}', '2',
                  int(gmacs * 1e9) if gmacs else None, baseline, m)


def split_rows():
    """Backbone / features / predict rows of a model in two forms and of
    the baseline, with round numbers."""
    return [fake_row(subject, form, (64, 64), ms, task, gmacs, base)
            for subject, form, base, times, macs in (
                ('A', 'training', False, (20, 50, 100), (1, 3, 6)),
                ('A', 'deploy', False, (10, 40, 80), (1, 3, 6)),
                ('R', 'training', True, (60, 90, 160), (4, 6, 12)))
            for task, ms, gmacs in zip(bt.SPLIT_TASKS, times, macs)]


def table_cells(text):
    return [[c.strip() for c in line.strip('|').split('|')]
            for line in text.splitlines()]


def test_split_table():
    cells = table_cells(bt.split_table(split_rows()))
    assert cells[0][4:] == ['backbone ms', 'neck ms', 'heads ms', 'whole ms',
                            'backbone + neck x R (MAC bound)',
                            'whole x R (MAC bound)']
    # neck = features - backbone, heads = predict - features; shares of the
    # whole; speed-up over R's training form (R's MACs / A's in brackets)
    assert cells[2] == ['A', 'training', '1x3x64x64', '2', '20.0 (20%)',
                        '30.0 (30%)', '50.0 (50%)', '100.0', '1.80 (2.00)',
                        '1.60 (2.00)']
    assert cells[3][4:] == ['10.0 (12%)', '30.0 (38%)', '40.0 (50%)', '80.0',
                            '2.25 (2.00)', '2.00 (2.00)']
    assert cells[4][8:] == ['1.00 (1.00)', '1.00 (1.00)']
    assert len(cells) == 5   # no noise: no footnote


def test_split_table_marks_noise():
    """On a noisy machine predict can come out faster than features: a
    difference below zero, or a part above the whole, is no time."""
    assert 'n/a' not in bt.split_table(split_rows())
    rows = split_rows()
    # A, deploy: backbone 10, features 40, predict 35 ms; and at another
    # input backbone 50, features 40, predict 30 ms
    rows[5] = fake_row('A', 'deploy', (64, 64), 35, 'predict', 6)
    rows += [fake_row('A', 'deploy', (32, 32), ms, task)
             for task, ms in zip(bt.SPLIT_TASKS, (50, 40, 30))]
    lines = bt.split_table(rows).splitlines()
    cells = table_cells('\n'.join(lines))
    assert cells[3][4:8] == ['10.0 (29%)', '30.0 (86%)',
                             'n/a (noise: -5.00 ms)', '35.0']
    assert cells[5][:8] == ['A', 'deploy', '1x3x32x32', '2',
                            'n/a (noise: 50.0 ms, 167% of the whole)',
                            'n/a (noise: -10.00 ms)',
                            'n/a (noise: -10.00 ms)', '30.0']
    # the footnote, below the table
    assert lines[6:7] == [''] and len(lines) == 8 and lines[7].startswith(
        'n/a (noise): below zero or above the whole, so not a time')
