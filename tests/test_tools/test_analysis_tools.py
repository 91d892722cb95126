# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""tools/analysis_tools/ and mmrepvit.analysis: MACs and parameters against
counts written out from the arch table, the latency tool's table (not its
timings), training logs of both formats, and the demo's curves."""
import argparse
import json
import math
import os
import runpy
import subprocess
import sys
from functools import partial

import pytest
import torch

from helpers import REPO, STRIDES, WIDTHS, logged_messages

from mmrepvit.analysis import builders, complexity, latency, logs

# The SE flag of every block row (the reference's arch table).
SE_FLAGS = {'m0_6': '10010010101010001',
            'm1_1': '100010001010101010100010'}
# SE's reduced width per block width (the reference's list).
SE_WIDTH = {40: 8, 80: 24, 160: 40, 320: 80, 64: 16, 128: 32, 256: 64,
            512: 128}
SEG_DEMO = REPO / 'configs' / 'seg' / 'repvit_m0_6_fpn_demo.py'
DET_DEMO = REPO / 'configs' / 'det' / 'repvit_m0_6_maskrcnn_demo.py'
PAPER = {'m0_9': 0.8, 'm1_0': 1.1, 'm1_1': 1.3, 'm1_5': 2.3, 'm2_3': 4.5}


def deploy_counts_by_hand(arch, size=224, classes=1000):
    """MACs and parameters of the fused ImageNet classifier, layer by layer
    from the arch table: each conv costs (output pixels x output channels x
    input channels per group x k x k) MACs, the Linear in x out."""
    macs = params = 0

    def conv(cin, cout, k, out_size, groups=1):
        nonlocal macs, params
        macs += out_size ** 2 * cout * (cin // groups) * k * k
        params += cout * (cin // groups) * k * k + cout   # with bias

    width = WIDTHS[arch][0]
    h = math.ceil(size / 2)
    conv(3, width // 2, 3, h)
    h = math.ceil(h / 2)
    conv(width // 2, width, 3, h)
    stage, cin = 0, width
    for stride, se in zip(STRIDES[arch], SE_FLAGS[arch]):
        if stride == '2':
            stage, h = stage + 1, math.ceil(h / 2)
        c = WIDTHS[arch][stage]
        conv(cin, cin, 3, h, groups=cin)      # the (fused) 3x3 depthwise
        if se == '1':
            conv(cin, SE_WIDTH[cin], 1, 1)
            conv(SE_WIDTH[cin], cin, 1, 1)
        if stride == '2':
            conv(cin, c, 1, h)
        conv(c, 2 * c, 1, h)
        conv(2 * c, c, 1, h)
        cin = c
    return macs + cin * classes, params + cin * classes + classes, cin * h * h


# ------------------------------------------------------------- FLOPs
@pytest.mark.parametrize('arch', ['m0_6', 'm1_1'])
def test_deploy_form_matches_counts_by_hand(arch):
    result = complexity.arch_complexity(arch, deploy=True)
    macs, params, pooled = deploy_counts_by_hand(arch)
    assert result.input_shape == (1, 3, 224, 224)
    assert result.params == params          # exact
    # Tolerance: MMEngine also counts the global average pool, one MAC per
    # pooled element (C x 7 x 7: 0.004% of m0_6's total); nothing else.
    assert 0 <= result.macs - macs <= pooled
    if arch in PAPER:
        assert abs(result.macs / 1e9 / PAPER[arch] - 1) <= 0.05
    # The reference's count of the fused network: m0_6 0.385G, m1_1 1.337G.
    assert round(macs / 1e9, 3) == {'m0_6': 0.385, 'm1_1': 1.337}[arch]


def test_training_form_costs_at_least_the_deploy_form():
    train = complexity.arch_complexity('m0_6', deploy=False, size=(64, 64))
    deploy = complexity.arch_complexity('m0_6', deploy=True, size=(64, 64))
    # The training form adds BN layers and each RepVGGDW's 1x1 depthwise conv.
    assert train.macs > deploy.macs and train.params > deploy.params


def test_count_gives_get_model_complexity_info_totals():
    from mmengine.analysis import get_model_complexity_info
    model = builders.build_classifier('m0_6')
    builders.to_deploy(model)
    x = torch.randn(1, 3, 64, 64)
    ours = complexity.count(model, (x, ))
    theirs = get_model_complexity_info(model, inputs=(x, ), show_table=False,
                                       show_arch=False)
    assert (ours.macs, ours.params) == (theirs['flops'], theirs['params'])


def test_fused_classifier_computes_the_same():
    model = builders.build_classifier('m0_6')
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
        x = torch.randn(2, 3, 64, 64)
        before = model(x)
        assert builders.to_deploy(model) == 1
        assert isinstance(model.head, torch.nn.Linear)
        assert torch.allclose(model(x), before, rtol=1e-4, atol=1e-4)


def test_config_breakdown_adds_up():
    builders.use_quiet_logger()
    cfg = builders.load_config(str(SEG_DEMO))
    result = complexity.config_complexity(cfg, (64, 64), deploy=True, depth=1)
    parts = result.by_module
    assert set(parts) == {'backbone', 'neck', 'decode_head',
                          complexity.OUTSIDE}
    assert sum(p for p, _ in parts.values()) == result.params
    assert sum(m for _, m in parts.values()) == result.macs
    # MMSegmentation calls decode_head.forward() directly, so the head's own
    # upsampling (no parameters, 0.1% of the MACs) lands outside every module.
    params, macs = parts[complexity.OUTSIDE]
    assert params == 0 and 0 < macs < 0.01 * result.macs
    # The backbone alone, counted directly, is the backbone's share.
    backbone = builders.build_from_config(cfg).backbone
    builders.to_deploy(backbone)
    direct = complexity.count(backbone, (torch.randn(1, 3, 64, 64), ))
    assert parts['backbone'] == (direct.params, direct.macs)


def test_resnet50_twin_swaps_only_the_backbone():
    cfg = builders.load_config(str(REPO / 'configs/det' /
                                   'repvit_m1_1_maskrcnn.py'))
    twin = builders.resnet50_twin(cfg)
    assert twin.model.backbone.type == 'ResNet' and \
        twin.model.backbone.depth == 50
    assert twin.model.neck.in_channels == [256, 512, 1024, 2048]
    assert twin.model.roi_head == cfg.model.roi_head
    assert builders.model_name(twin) == 'ResNet-50 MaskRCNN'
    assert builders.model_name(cfg) == 'RepViT-M1.1 MaskRCNN'


def run_tool(tool, *args):
    proc = subprocess.run(
        [sys.executable, f'tools/analysis_tools/{tool}', *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_get_flops_tool():
    out = run_tool('get_flops.py', '--arch', 'm0_6', '--forms', 'training',
                   'deploy', '--shape', 64, 64)
    assert '== RepViT-M0.6 (ImageNet classifier), deploy form' in out
    assert '| RepViT-M0.6 (ImageNet classifier) | 1x3x64x64 |' in out


def tool_namespace(tool):
    """The globals of tools/analysis_tools/``tool``, run as a module (its
    main() not called)."""
    return runpy.run_path(str(REPO / 'tools' / 'analysis_tools' / tool))


def parse_tool_args(monkeypatch, tool, *args):
    """``tool``'s parse_args() on the command line ``args``, in this
    process (nothing is built)."""
    monkeypatch.setattr(sys, 'argv', [tool, *map(str, args)])
    return tool_namespace(tool)['parse_args']()


def usage_error(monkeypatch, capsys, tool, *args):
    """The message of ``tool``'s usage error (exit status 2) for ``args``."""
    with pytest.raises(SystemExit) as error:
        parse_tool_args(monkeypatch, tool, *args)
    assert error.value.code == 2
    return capsys.readouterr().err


def test_get_flops_cfg_options_as_in_train(monkeypatch, capsys):
    # KEY VALUE (no '=') is a usage error, as in tools/train.py
    err = usage_error(monkeypatch, capsys, 'get_flops.py', SEG_DEMO,
                      '--cfg-options', 'model.backbone.arch', 'm1_1')
    assert "error: --cfg-options expects KEY=VALUE pairs, got " \
        "'model.backbone.arch'" in err
    # a key that changes nothing is warned about, as by tools/train.py
    args = parse_tool_args(monkeypatch, 'get_flops.py', SEG_DEMO,
                           '--cfg-options', 'model.backbone.norm_evall=True')
    with logged_messages() as logged:
        cfg = builders.load_config(args.configs[0], args.cfg_options)
    assert cfg.model.backbone.norm_evall is True   # merged all the same
    assert any('--cfg-options model.backbone.norm_evall:' in m and
               'Did you mean model.backbone.norm_eval?' in m for m in logged)


# ---------------------------------------------------------- benchmark
def test_benchmark_table_structure():
    subjects = [latency.arch_subject('m0_6'),
                latency.arch_subject('resnet50')]
    rows = latency.run_benchmark(
        subjects, ['training', 'deploy', 'deploy+channels_last'], 'forward',
        batches=[1], sizes=[(32, 32)], threads=[1], warmup=1,
        min_run_time=0.001, rounds=1, log=lambda _: None)
    # ResNet-50 has nothing to fuse: no deploy row; its deploy+channels_last
    # is its channels_last form.
    assert [(r.subject, r.form) for r in rows] == [
        ('RepViT-M0.6', 'training'), ('RepViT-M0.6', 'deploy'),
        ('RepViT-M0.6', 'deploy+channels_last'), ('ResNet-50', 'training'),
        ('ResNet-50', 'channels_last')]
    assert all(r.median_ms > 0 and r.macs > 0 for r in rows)
    peak = latency.CpuPeak('test CPU', 2, 8, 2.0, 'test')
    lines = latency.markdown_table(rows, peak).splitlines()
    head = [c.strip() for c in lines[0].strip('|').split('|')]
    assert head == ['model', 'form', 'input', 'threads', 'median ms',
                    'IQR ms', 'x training', 'x ResNet-50', 'GMAC/s',
                    '% of peak']
    assert lines[1] == '|' + '---|' * len(head)
    cells = [[c.strip() for c in line.strip('|').split('|')]
             for line in lines[2:]]
    assert len(cells) == len(rows) and all(len(c) == len(head) for c in cells)
    assert cells[0][:4] == ['RepViT-M0.6', 'training', '1x3x32x32', '1']
    assert cells[0][6] == '1.00' and cells[3][6:8] == ['1.00', '1.00']
    assert all(c[-1].endswith('%') for c in cells)


def test_a_new_form_is_one_entry(monkeypatch):
    """Another path (onnxruntime, say) is one more entry in FORMS."""
    calls = []

    def traced(model, inputs, run):
        scripted = torch.jit.trace(model, inputs, strict=False)
        return lambda: calls.append(scripted(inputs))

    monkeypatch.setitem(latency.FORMS, 'traced', latency.Form(traced, True))
    rows = latency.run_benchmark(
        [latency.arch_subject('m0_6')], ['traced'], 'forward', [1],
        [(32, 32)], [1], warmup=0, min_run_time=0.001, rounds=1,
        with_macs=False, log=lambda _: None)
    assert [r.form for r in rows] == ['traced'] and calls


def test_onnxruntime_form_runs_what_pytorch_computes():
    """The onnxruntime form times the exported deploy form: its timed call
    returns the fused backbone's stage outputs (within 1e-4 relative, the
    exporter's parity tolerance); a model without a RepViT is left out
    with a note."""
    import numpy as np
    subjects = [latency.arch_subject('m0_6'), latency.arch_subject('resnet50')]
    cases, notes = latency.build_cases(subjects, ['deploy', 'onnxruntime'],
                                       'forward', 2, (64, 96), 'cpu', False)
    assert [(c.subject, c.form) for c in cases] == [
        ('RepViT-M0.6', 'deploy'), ('RepViT-M0.6', 'onnxruntime'),
        ('ResNet-50', 'training')]
    assert notes == ["ResNet-50, onnxruntime: does not apply to the "
                     "'forward' task on cpu"]
    ours, theirs = cases[1].fn(), cases[0].fn()
    assert len(ours) == len(theirs) == 4
    for o, t in zip(ours, theirs):
        assert o.shape == tuple(t.shape)
        assert np.abs(o - t.numpy()).max() <= 1e-4 * t.abs().max().item()


def test_float16_forms_are_cuda_only():
    """Off CUDA the float16 autocast forms are left out with a note, not
    run in float32 under their name (tests/test_cuda.py runs them)."""
    cases, notes = latency.build_cases(
        [latency.arch_subject('m0_6')], ['deploy', *latency.CUDA_AMP_FORMS],
        'forward', 1, (32, 32), 'cpu', False)
    assert [c.form for c in cases] == ['deploy']
    assert notes == [f"RepViT-M0.6, {form}: does not apply to the 'forward' "
                     f"task on cpu" for form in latency.CUDA_AMP_FORMS]


def split_rows():
    """Backbone / features / predict rows of a model in two forms and of
    the baseline, with round numbers."""
    rows = []
    for subject, form, base, times, macs in (
            ('A', 'training', False, (20, 50, 100), (1, 3, 6)),
            ('A', 'deploy', False, (10, 40, 80), (1, 3, 6)),
            ('R', 'training', True, (60, 90, 160), (4, 6, 12))):
        for task, ms, gmacs in zip(latency.SPLIT_TASKS, times, macs):
            row = fake_row(subject, form, 1, (64, 64), 2, ms)
            row.task, row.macs, row.baseline = task, int(gmacs * 1e9), base
            rows.append(row)
    return rows


def test_split_table():
    lines = latency.split_table(split_rows()).splitlines()
    cells = [[c.strip() for c in line.strip('|').split('|')]
             for line in lines]
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
    assert cells[8:] == [['A', 'training', '1x3x64x64', '1.00', '2.00',
                          '3.00', '6.00'],
                         ['A', 'deploy', '1x3x64x64', '1.00', '2.00', '3.00',
                          '6.00'],
                         ['R', 'training', '1x3x64x64', '4.00', '2.00', '6.00',
                          '12.0']]


def test_split_table_marks_noise():
    """On a noisy machine predict can come out faster than features: a
    difference below zero, or a part above the whole, is no time."""
    assert 'n/a' not in latency.split_table(split_rows())
    rows = split_rows()
    # A, deploy: backbone 10, features 40, predict 35 ms; and at another
    # input backbone 50, features 40, predict 30 ms
    rows[5] = fake_row('A', 'deploy', 1, (64, 64), 2, 35)
    rows[5].task, rows[5].macs = 'predict', int(6e9)
    for task, ms in zip(latency.SPLIT_TASKS, (50, 40, 30)):
        row = fake_row('A', 'deploy', 1, (32, 32), 2, ms)
        row.task = task
        rows.append(row)
    lines = latency.split_table(rows).splitlines()
    cells = [[c.strip() for c in line.strip('|').split('|')]
             for line in lines]
    assert cells[3][4:8] == ['10.0 (29%)', '30.0 (86%)',
                             'n/a (noise: -5.00 ms)', '35.0']
    assert cells[5][:8] == ['A', 'deploy', '1x3x32x32', '2',
                            'n/a (noise: 50.0 ms, 167% of the whole)',
                            'n/a (noise: -10.00 ms)',
                            'n/a (noise: -10.00 ms)', '30.0']
    # the footnote, between the table and the MACs
    assert lines[6] == '' and lines[7].startswith(
        'n/a (noise): below zero or above the whole, so not a time')
    assert lines[8] == '' and lines[9].startswith('| model | form | input '
                                                  '| backbone GMACs')


def test_benchmark_tool_split_with_onnxruntime(tmp_path):
    """A segmentor's whole-model split, onnxruntime included, through the
    tool (one tiny round: the table's shape, not its timings)."""
    out = tmp_path / 'report.md'
    run_tool('benchmark.py', SEG_DEMO, '--split', '--sizes', 64,
             '--threads', 1, '--forms', 'deploy', 'onnxruntime',
             '--warmup', 0, '--min-run-time', 0.001, '--rounds', 1,
             '--out', out)
    text = out.read_text()
    for task in latency.SPLIT_TASKS:
        assert (f'| RepViT-M0.6 EncoderDecoder | onnxruntime | {task} | '
                f'1x3x64x64 | 1 |') in text
    split = [line for line in text.splitlines()
             if line.startswith('| RepViT-M0.6 EncoderDecoder | onnxruntime '
                                '| 1x3x64x64 | 1 |')]
    assert len(split) == 1 and split[0].count('%') == 3
    assert 'goal RepViT-M0.6 EncoderDecoder onnxruntime / eager PyTorch ' \
        'deploy form, 1x3x64x64, 1 threads: ' in text


def test_benchmark_tool_writes_a_markdown_report(tmp_path):
    out = tmp_path / 'report.md'
    run_tool('benchmark.py', '--arch', 'm0_6', '--sizes', 32, '--threads', 1,
             '--forms', 'training', 'deploy', '--baseline', 'none',
             '--warmup', 0, '--min-run-time', 0.001, '--rounds', 1,
             '--out', out)
    text = out.read_text()
    assert text.startswith('$ python tools/analysis_tools/benchmark.py')
    assert '| RepViT-M0.6 | deploy | 1x3x32x32 | 1 |' in text


@pytest.mark.parametrize('args, message', [
    # counts are positive, warm-up calls zero or more, run time above zero
    (['--batch-sizes', 0],
     "argument --batch-sizes: expected an integer >= 1, got '0'"),
    (['--threads', 2, 0],
     "argument --threads: expected an integer >= 1, got '0'"),
    (['--rounds', 0], "argument --rounds: expected an integer >= 1, got '0'"),
    (['--warmup', -1],
     "argument --warmup: expected an integer >= 0, got '-1'"),
    (['--min-run-time', 0],
     "argument --min-run-time: expected seconds above zero, got '0'"),
    # a baseline is 'auto', 'none' or a config, not a backbone
    (['--baseline', 'resnet50'],
     "--baseline takes 'auto' (ResNet-50 beside --arch, the ResNet-50 twin "
     "beside configs), 'none' or a detector/segmentor config (a file or an "
     "mmdet::/mmseg:: path), not 'resnet50'; a backbone is measured with "
     "--arch"),
    # torch.device does not know 'gpu'; the tool runs on CPU and CUDA only
    (['--device', 'gpu'],
     "argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (['--device', 'meta'],
     "argument --device: expected cpu, cuda or cuda:N, got 'meta'"),
])
def test_benchmark_usage_errors(monkeypatch, capsys, args, message):
    err = usage_error(monkeypatch, capsys, 'benchmark.py', '--arch', 'm0_6',
                      *args)
    assert f'benchmark.py: error: {message}\n' in err


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA machine')
@pytest.mark.parametrize('device', ['cuda', 'cuda:0'])
def test_benchmark_cuda_device_without_cuda(monkeypatch, capsys, device):
    """CUDA asked of a PyTorch that sees none: a usage error naming the
    fix, not a traceback from the first tensor moved."""
    err = usage_error(monkeypatch, capsys, 'benchmark.py', '--arch', 'm0_6',
                      '--device', device)
    assert (f"error: argument --device: {device!r}: this PyTorch sees no "
            f"CUDA device (torch.cuda.is_available() is False); use --device "
            f"cpu") in err


def test_benchmark_any_cuda_device_is_cuda(monkeypatch):
    """'cuda:1' is as much CUDA as 'cuda' (the header names its GPU); a CPU
    device is 'cpu', whatever its spelling."""
    tool = tool_namespace('benchmark.py')
    monkeypatch.setattr(torch.cuda, 'get_device_name',
                        lambda device=None: f'the GPU of {device}')
    lines = tool['header'](argparse.Namespace(device='cuda:1'), None)
    assert lines[-1] == 'GPU: the GPU of cuda:1'
    args = parse_tool_args(monkeypatch, 'benchmark.py', '--arch', 'm0_6',
                           '--device', 'cpu:0')
    assert args.device == 'cpu'


def test_benchmark_train_breakdown_takes_its_forms_only(monkeypatch, capsys):
    """--cuda-amp and --forms deploy... are inference forms: a usage error
    before anything is built (the breakdown raised after building the first
    models)."""
    for extra in (['--cuda-amp'], ['--forms', 'training', 'deploy']):
        err = usage_error(monkeypatch, capsys, 'benchmark.py', DET_DEMO,
                          '--train-breakdown', *extra)
        assert 'error: --train-breakdown times the training and ' \
            'channels_last forms only; --cuda-amp and the deploy, fp16 and ' \
            'onnxruntime forms are for inference' in err
    args = parse_tool_args(monkeypatch, 'benchmark.py', DET_DEMO,
                           '--train-breakdown', '--forms', 'channels_last')
    assert args.forms == ['channels_last']


def test_training_step_breakdown_parts():
    builders.use_quiet_logger()
    cfg = builders.load_config(str(SEG_DEMO))
    subject = latency.config_subject(cfg)
    cases = latency.breakdown_cases(subject, 'channels_last', 1, (64, 64),
                                    'cpu')
    assert [c.form for c in cases] == [
        f'channels_last: {p}' for p in latency.BREAKDOWN_PARTS]
    results = latency.measure(cases, 1, 0, 0.001, 1)
    table = latency.breakdown_table([subject.name], ['channels_last'], cases,
                                    results).splitlines()
    parts = [line.split('|')[1].strip() for line in table[2:]]
    assert parts == ['data preprocessor', 'backbone forward',
                     'backbone forward+backward',
                     'backbone backward (difference)',
                     'neck forward+backward', 'heads forward+backward',
                     'sum of the parts', 'whole step']
    assert all(float(line.split('|')[2]) for line in table[2:]
               if 'difference' not in line)


def test_training_step_breakdown_channels_last_heads_get_nchw():
    """The channels_last breakdown runs the backbone and neck in
    channels_last, as the 'train' task does: the RoI heads get NCHW
    features (mmcv's RoIAlign misreads channels_last ones), so the step's
    losses are the training form's."""
    builders.use_quiet_logger()
    subject = latency.config_subject(builders.load_config(str(DET_DEMO)))
    build = subject.build

    def instrumented(record):
        model = build()
        model.roi_head.bbox_roi_extractor.register_forward_pre_hook(
            lambda _, args: record['feats'].extend(args[0]))
        parse_losses = model.parse_losses

        def parse_and_record(losses):
            loss, log_vars = parse_losses(losses)
            record['losses'].append(
                {k: float(v.detach()) for k, v in log_vars.items()})
            return loss, log_vars
        model.parse_losses = parse_and_record
        return model

    seen = {}
    for form in ('training', 'channels_last'):
        record = seen[form] = dict(feats=[], losses=[])
        subject.build = partial(instrumented, record)
        for case in latency.breakdown_cases(subject, form, 1, (64, 64),
                                            'cpu'):
            if case.form.endswith(('heads forward+backward', 'whole step')):
                case.fn()
    for record in seen.values():
        assert len(record['losses']) == 2   # the heads, the whole step
        assert record['feats'] and all(f.is_contiguous()
                                       for f in record['feats'])
    # Tolerance: the backbone and neck's float32 convolutions round
    # differently in channels_last (1e-7 relative here); the whole detector in
    # channels_last moved loss_mask by 20%.
    for ours, reference in zip(seen['channels_last']['losses'],
                               seen['training']['losses']):
        assert ours == pytest.approx(reference, rel=1e-4, abs=1e-6)


def test_cpu_peak_from_lscpu_fields():
    fields = {'Model name': 'Some CPU', 'Core(s) per socket': '4',
              'Socket(s)': '2', 'CPU max MHz': '3000.0',
              'cpu MHz': '1200.0', 'Flags': 'sse2 avx avx2 fma avx512f'}
    peak = latency.cpu_peak(fields)
    # 8 cores x 16 lanes (AVX-512) x 2 FMA units x 3.0 GHz
    assert (peak.cores, peak.lanes, peak.ghz) == (8, 16, 3.0)
    assert peak.gmacs(8) == peak.gmacs(64) == 768
    assert peak.gmacs(1) == 96
    fields['Flags'] = 'sse2 avx avx2 fma'
    del fields['CPU max MHz']
    peak = latency.cpu_peak(fields)
    assert (peak.lanes, peak.ghz) == (8, 1.2)   # AVX2+FMA; current clock
    assert latency.cpu_peak({'Flags': 'vme'}) is None


def fake_row(subject, form, batch, size, threads, ms):
    from torch.utils.benchmark.utils.common import Measurement, TaskSpec
    m = Measurement(1, [ms / 1e3], TaskSpec('fn()', 'pass'))
    return latency.Row(subject, form, 'forward', batch, size, threads, 'cpu',
                       m)


def test_goal_lines():
    rows = [fake_row('RepViT-M1.1', 'training', 1, (512, 512), 2, 130),
            fake_row('RepViT-M1.1', 'deploy', 1, (512, 512), 2, 100),
            fake_row('RepViT-M1.1', 'deploy', 8, (224, 224), 2, 100),
            fake_row('RepViT-M1.1', 'deploy+channels_last', 8, (224, 224), 2,
                     80),
            fake_row('S', 'deploy', 1, (512, 2048), 2, 90),
            fake_row('S', 'onnxruntime', 1, (512, 2048), 2, 100)]
    for row in rows[-2:]:
        row.task = 'predict'
    assert latency.goal_lines(rows) == [
        'goal RepViT-M1.1 deploy / training form, 1x3x512x512, 2 threads: '
        '1.30x (goal >= 1.2x: met)',
        'goal RepViT-M1.1 deploy+channels_last / deploy, 8x3x224x224, 2 '
        'threads: 1.25x (goal >= 1.3x: NOT met)',
        'goal S onnxruntime / eager PyTorch deploy form, 1x3x512x2048, 2 '
        'threads: 0.90x (goal >= 1.0x: NOT met)']


# --------------------------------------------------------------- logs
def write_lines(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return path


def mmengine_det_log(work):
    """Two epochs of 20 iterations, logged every 10, validated per epoch."""
    records = []
    for it, loss in zip((10, 20, 30, 40), (4.0, 3.0, 2.0, 1.0)):
        records.append(dict(lr=0.001 * it, data_time=0.01, loss=loss,
                            loss_cls=loss / 2, loss_bbox=loss / 4,
                            time=0.1 * it, epoch=1 + (it > 20), iter=it,
                            step=it))
        if it in (20, 40):
            records.append({'coco/bbox_mAP': {20: 0.1, 40: 0.2}[it],
                            'coco/segm_mAP': {20: 0.25, 40: 0.2}[it],
                            'data_time': 0.01, 'time': 0.5,
                            'step': it // 20})
    return write_lines(work / '20240102_000000' / 'vis_data' /
                       'scalars.json', records)


def test_mmengine_epoch_based_log(tmp_path):
    work = tmp_path / 'work'
    # An older run in the same work dir is not the one read.
    write_lines(work / '20240101_000000' / 'vis_data' / 'scalars.json',
                [dict(lr=1, loss=9.0, iter=1, step=1)])
    mmengine_det_log(work)
    # A half-written line of a running job is skipped.
    with open(work / '20240102_000000' / 'vis_data' / 'scalars.json',
              'a') as f:
        f.write('{"lr": 0.1, "lo')
    log = logs.load_log(str(work))
    assert log.format == 'mmengine' and log.by_epoch
    assert log.name == 'work/20240102_000000'
    assert log.series('loss') == ([10, 20, 30, 40], [4.0, 3.0, 2.0, 1.0])
    assert log.series('loss', 'epoch') == ([0.5, 1.0, 1.5, 2.0],
                                           [4.0, 3.0, 2.0, 1.0])
    assert log.series('coco/bbox_mAP') == ([20, 40], [0.1, 0.2])
    assert log.series('coco/segm_mAP', 'epoch') == ([1, 2], [0.25, 0.2])
    assert log.loss_keys() == ['loss', 'loss_cls', 'loss_bbox']
    s = logs.summarize(log)
    assert s['iterations'] == 40 and s['epochs'] == 2
    assert s['metrics']['coco/bbox_mAP'] == dict(final=0.2, best=0.2,
                                                 best_at='epoch 2')
    assert s['metrics']['coco/segm_mAP'] == dict(final=0.2, best=0.25,
                                                 best_at='epoch 1')
    assert s['time'] == pytest.approx(2.5)   # median of 1, 2, 3, 4 s
    assert s['peak_memory_mb'] is None and s['final_loss'] == 1.0
    text = logs.format_summary(s)
    assert 'coco/segm_mAP: final 0.2, best 0.25 (epoch 1)' in text
    assert 'peak memory' not in text


def test_mmengine_iteration_based_log(tmp_path):
    path = write_lines(tmp_path / 'scalars.json', [
        dict(lr=0.01, loss=2.0, memory=900, time=0.2, iter=1, step=1),
        dict(lr=0.009, loss=1.0, memory=1000, time=0.4, iter=2, step=2),
        dict(aAcc=80.0, mIoU=40.0, mAcc=50.0, time=0.1, step=2)])
    log = logs.load_log(str(path))
    assert not log.by_epoch
    assert log.series('mIoU') == ([2], [40.0])
    assert log.series('mIoU', 'epoch') == ([], [])
    s = logs.summarize(log)
    assert s['peak_memory_mb'] == 1000 and s['epochs'] is None
    assert s['metrics']['mIoU']['best_at'] == 'iter 2'


def test_mmcv1_detection_log(tmp_path):
    """MMDetection 2.x: 'iter' restarts every epoch; metrics without the
    'coco/' prefix."""
    env = {'env_info': 'sys.platform: linux', 'config': '...', 'seed': 0}
    records = [env]
    for epoch in (1, 2):
        for it in (50, 100):
            records.append(dict(mode='train', epoch=epoch, iter=it, lr=2e-4,
                                memory=5000 + 100 * epoch, data_time=0.05,
                                loss_rpn_cls=0.1, loss=2.0 / epoch / it,
                                time=0.25))
        records.append(dict(mode='val', epoch=epoch, iter=100, lr=2e-4,
                            bbox_mAP=0.3 + 0.1 * epoch, bbox_mAP_50=0.5,
                            segm_mAP=0.3))
    log = logs.load_log(str(write_lines(tmp_path / 'x.log.json', records)),
                        name='paper')
    assert log.format == 'mmcv1' and log.by_epoch and log.name == 'paper'
    assert log.series('loss')[0] == [50, 100, 150, 200]
    assert log.series('loss', 'epoch')[0] == [0.5, 1.0, 1.5, 2.0]
    assert log.series('coco/bbox_mAP') == ([100, 200], [0.4, 0.5])
    assert log.series('coco/segm_mAP', 'epoch') == ([1, 2], [0.3, 0.3])
    s = logs.summarize(log)
    assert s['peak_memory_mb'] == 5200 and s['time'] == 0.25
    assert s['metrics']['coco/bbox_mAP']['best_at'] == 'epoch 2'


def test_mmcv1_segmentation_log(tmp_path):
    """MMSegmentation 0.x: global 'iter'; mIoU etc. as fractions."""
    records = [{'env_info': '...'},
               dict(mode='train', epoch=1, iter=50, lr=2e-4, loss=2.0,
                    time=0.14),
               dict(mode='train', epoch=1, iter=100, lr=1e-4, loss=1.0,
                    time=0.15),
               dict(mode='val', epoch=1, iter=2000, lr=1e-4, aAcc=0.75,
                    mIoU=0.4061, mAcc=0.5, **{'IoU.wall': 0.7}),
               dict(mode='train', epoch=2, iter=150, lr=1e-5, loss=0.5,
                    time=0.16)]
    log = logs.load_log(str(write_lines(tmp_path / 's.log.json', records)))
    assert not log.by_epoch
    assert log.series('loss') == ([50, 100, 150], [2.0, 1.0, 0.5])
    xs, ys = log.series('mIoU')
    assert xs == [100] and ys == [pytest.approx(40.61)]
    assert log.series('IoU.wall')[1] == [pytest.approx(70.0)]


def test_plot_overlays_runs_into_a_png(tmp_path):
    ours = logs.load_log(str(mmengine_det_log(tmp_path / 'a')))
    theirs = logs.load_log(str(write_lines(tmp_path / 'p.log.json', [
        dict(mode='train', epoch=1, iter=10, lr=1e-3, loss=3.0, time=0.2),
        dict(mode='val', epoch=1, iter=10, lr=1e-3, bbox_mAP=0.35)])))
    assert logs.default_keys([ours, theirs]) == [
        'loss', 'loss_cls', 'loss_bbox', 'lr', 'coco/bbox_mAP',
        'coco/segm_mAP']
    png = logs.plot_logs([ours, theirs], str(tmp_path / 'curves.png'),
                         x='epoch')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_analyze_logs_tool(tmp_path):
    log = mmengine_det_log(tmp_path / 'work')
    out = tmp_path / 'curves.png'
    text = run_tool('analyze_logs.py', 'plot_curve', str(tmp_path / 'work'),
                    log, '--legend', 'a', 'b', '--keys', 'loss',
                    'coco/bbox_mAP', '--out', out)
    assert 'a (mmengine log): 40 iterations, 2 epochs' in text
    assert out.read_bytes()[:4] == b'\x89PNG'
    text = run_tool('analyze_logs.py', 'summary', log)
    assert 'coco/bbox_mAP: final 0.2, best 0.2 (epoch 2)' in text


def test_demo_writes_the_training_curves(tmp_path):
    mmengine_det_log(tmp_path)
    demo = runpy.run_path(str(REPO / 'tools' / 'demo.py'))
    png, summary = demo['plot_training_curves'](str(tmp_path))
    assert png == os.path.join(str(tmp_path), 'training_curves.png')
    assert os.path.getsize(png) > 0 and '40 iterations' in summary
