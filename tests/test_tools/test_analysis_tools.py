# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""tools/analysis_tools/get_flops.py and benchmark.py: the paper's MAC and
parameter counts against counts written out from the arch table, the
tools' reports (their shape, not timings) and their usage errors."""
import argparse
import math
import re
import subprocess
import sys

import pytest
import torch

from helpers import (
    REPO,
    STRIDES,
    WIDTHS,
    import_tool,
    logged_messages,
    run_tool,
)
from mmrepvit.apis import cpu_flags
from mmrepvit.utils.config import load_config

# The SE flag of every block row (the reference's arch table).
SE_FLAGS = {'m0_6': '10010010101010001',
            'm1_1': '100010001010101010100010'}
# SE's reduced width per block width (the reference's list).
SE_WIDTH = {40: 8, 80: 24, 160: 40, 320: 80, 64: 16, 128: 32, 256: 64,
            512: 128}
SEG_DEMO = REPO / 'configs' / 'seg' / 'repvit_m0_6_fpn_demo.py'
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



@pytest.fixture(scope='module')
def get_flops():
    return import_tool('tools/analysis_tools/get_flops.py')


@pytest.mark.parametrize('arch', ['m0_6', 'm1_1'])
def test_deploy_form_matches_counts_by_hand(get_flops, arch):
    analyzer, params, shape = get_flops.count(arch, deploy=True)
    macs, by_hand, pooled = deploy_counts_by_hand(arch)
    assert shape == (1, 3, 224, 224)
    assert params == by_hand          # exact
    # Tolerance: MMEngine also counts the global average pool, one MAC per
    # pooled element (C x 7 x 7: 0.004% of m0_6's total); nothing else.
    assert 0 <= analyzer.total() - macs <= pooled
    diff = get_flops.paper_diff(arch, analyzer.total())
    assert (diff is None) == (arch not in PAPER)
    if arch in PAPER:
        assert abs(diff) <= 0.05
        assert abs(analyzer.total() / 1e9 / PAPER[arch] - 1) <= 0.05
    # The reference's count of the fused network: m0_6 0.385G, m1_1 1.337G.
    assert round(macs / 1e9, 3) == {'m0_6': 0.385, 'm1_1': 1.337}[arch]


def test_training_form_costs_more_than_the_deploy_form(get_flops):
    train, train_params, _ = get_flops.count('m0_6', shape=(64, 64))
    deploy, deploy_params, shape = get_flops.count('m0_6', deploy=True,
                                                   shape=(64, 64))
    # The training form adds BN layers and each RepVGGDW's 1x1 depthwise conv.
    assert shape == (1, 3, 64, 64)
    assert train.total() > deploy.total() and train_params > deploy_params


def run_benchmark(*args):
    """tools/analysis_tools/benchmark.py in a fresh Python (it sets torch's
    thread count); its output after checking it exits 0."""
    proc = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark.py', *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_get_flops_tool(monkeypatch, capsys):
    def get_flops(*args):
        run_tool(monkeypatch, 'tools/analysis_tools/get_flops.py', *args)
        return capsys.readouterr().out
    out = get_flops('--arch', 'm0_6', '--forms', 'training', 'deploy',
                    '--shape', 64, 64)
    assert '== RepViT-M0.6 (ImageNet classifier), deploy form' in out
    assert '| RepViT-M0.6 (ImageNet classifier) | 1x3x64x64 |' in out
    out = get_flops(SEG_DEMO, '--deploy', '--breakdown', '--shape', 64, 64)
    assert '== RepViT-M0.6 EncoderDecoder, deploy form, input 1x3x64x64' \
        in out
    # MMEngine's per-module table, one level down (it names a module with
    # one child by the child: backbone.features)
    rows = [line.split('|')[1].strip() for line in out.splitlines()
            if line.startswith('|')]
    assert [row.split('.')[0] for row in rows] == [
        'module', 'model', 'backbone', 'neck', 'decode_head']


def parse_tool_args(monkeypatch, tool, *args):
    """``tool``'s parse_args() on the command line ``args``, in this
    process (nothing is built)."""
    monkeypatch.setattr(sys, 'argv', [tool, *map(str, args)])
    return import_tool(f'tools/analysis_tools/{tool}').parse_args()


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
        cfg = load_config(args.configs[0], args.cfg_options)
    assert cfg.model.backbone.norm_evall is True   # merged all the same
    assert any('--cfg-options model.backbone.norm_evall:' in m and
               'Did you mean model.backbone.norm_eval?' in m for m in logged)


def test_get_flops_shape_as_in_mmdet(monkeypatch, capsys):
    # one value is a square, as MMDetection's get_flops.py takes it
    args = parse_tool_args(monkeypatch, 'get_flops.py', '--arch', 'm0_6',
                           '--shape', 64)
    assert args.shape == [64, 64]
    # a size below 1 is a usage error, not a convolution's traceback
    err = usage_error(monkeypatch, capsys, 'get_flops.py', '--arch', 'm0_6',
                      '--shape', 0, 0)
    assert "argument --shape: expected a positive size, got '0'" in err
    err = usage_error(monkeypatch, capsys, 'get_flops.py', '--arch', 'm0_6',
                      '--shape', 1, 2, 3)
    assert '--shape takes H W or one size, got [1, 2, 3]' in err


@pytest.mark.parametrize('tool', ['get_flops.py', 'benchmark.py'])
def test_a_checkpoint_is_no_config(tool, monkeypatch, capsys):
    # MMDetection's tools take CONFIG CHECKPOINT; these measure random
    # weights, and the checkpoint was read as a second config. A config
    # that does not exist is a usage error too.
    err = usage_error(monkeypatch, capsys, tool, SEG_DEMO, 'work/iter_2.pth')
    assert "'work/iter_2.pth' is a checkpoint, not a config: this tool " \
        'takes configs only' in err
    err = usage_error(monkeypatch, capsys, tool, 'nope.py')
    assert "argument configs: Config file 'nope.py' does not exist" in err


def test_options_that_change_nothing_are_errors(monkeypatch, capsys):
    # --cfg-options has no config to change beside --arch alone
    err = usage_error(monkeypatch, capsys, 'get_flops.py', '--arch', 'm0_6',
                      '--cfg-options', 'model.backbone.arch=m1_1')
    assert '--cfg-options changes configs; --arch counts' in err
    # a backbone has no training step: nothing to time is no empty table
    proc = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark.py', '--arch',
         'm0_6', '--task', 'train', '--sizes', '32', '--baseline', 'none',
         '--no-macs'], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "note: RepViT-M0.6: no 'train' task" in proc.stdout
    assert 'benchmark.py: error: nothing was measured' in proc.stderr
    assert '| model |' not in proc.stdout


def test_resnet50_twin_swaps_only_the_backbone():
    twin = import_tool('tools/analysis_tools/benchmark.py').resnet50_twin
    cfg = load_config(str(REPO / 'configs/det/repvit_m1_1_maskrcnn.py'))
    det = twin(cfg)
    assert det.model.backbone.type == 'ResNet' and \
        det.model.backbone.depth == 50
    assert det.model.neck.in_channels == [256, 512, 1024, 2048]
    assert det.model.roi_head == cfg.model.roi_head
    assert cfg.model.backbone.type == 'RepViT'   # cfg is not changed
    seg = twin(load_config(str(SEG_DEMO)))
    assert seg.model.backbone.type == 'ResNetV1c'
    assert seg.model.decode_head == twin(seg).model.decode_head
    # a model without a neck has no twin (the error names the way out)
    cfg.model.pop('neck')
    with pytest.raises(ValueError, match='Pass a ResNet-50 config as the '
                       'baseline instead'):
        twin(cfg)


def test_benchmark_tool_split_with_onnxruntime(tmp_path):
    """A segmentor's whole-model split, onnxruntime included, through the
    tool (one tiny round: the table's shape, not its timings)."""
    out = tmp_path / 'report.md'
    run_benchmark(SEG_DEMO, '--split', '--sizes', 64, '--threads', 1,
                  '--forms', 'deploy', 'onnxruntime', '--warmup', 0,
                  '--min-run-time', 0.001, '--rounds', 1, '--out', out)
    text = out.read_text()
    for task in ('backbone', 'features', 'predict'):
        assert (f'| RepViT-M0.6 EncoderDecoder | onnxruntime | {task} | '
                f'1x3x64x64 | 1 |') in text
    split = [line for line in text.splitlines()
             if line.startswith('| RepViT-M0.6 EncoderDecoder | onnxruntime '
                                '| 1x3x64x64 | 1 |')]
    assert len(split) == 1
    # backbone, neck, heads: a time and its share, or noise (one tiny round
    # on a busy machine); then the whole and the two ratios (MAC bounds)
    cells = [c.strip() for c in split[0].strip('|').split('|')]
    assert len(cells) == 10
    assert all(re.fullmatch(r'-?[\d.]+ \(\d+%\)|n/a \(noise: .*\)', c)
               for c in cells[4:7])
    assert all(re.fullmatch(r'[\d.]+ \([\d.]+\)', c) for c in cells[8:])
    # the baseline: the config's ResNet-50 twin
    assert '| ResNetV1c-50 EncoderDecoder | training | backbone |' in text


def test_benchmark_tool_writes_a_markdown_report(tmp_path):
    out = tmp_path / 'report.md'
    run_benchmark('--arch', 'm0_6', '--sizes', 32, '--threads', 1,
                  '--forms', 'training', 'deploy', '--baseline', 'none',
                  '--warmup', 0, '--min-run-time', 0.001, '--rounds', 1,
                  '--out', out)
    text = out.read_text()
    assert text.startswith('$ python tools/analysis_tools/benchmark.py')
    assert '| RepViT-M0.6 | deploy | 1x3x32x32 | 1 |' in text


def test_benchmark_tool_cpu_runtimes(tmp_path):
    """The header names the CPU and the ISA flags INT8 and bf16 speed
    depend on; OpenVINO and onnxruntime INT8 rows beside the deploy form."""
    out = tmp_path / 'report.md'
    printed = run_benchmark(
        '--arch', 'm0_6', '--sizes', 32, '--threads', 1, '--forms', 'deploy',
        'openvino', 'onnxruntime+int8', '--baseline', 'none', '--no-macs',
        '--warmup', 0, '--min-run-time', 0.001, '--rounds', 1, '--out',
        out).splitlines()
    lines = out.read_text().splitlines()
    flags = ', '.join(cpu_flags()) or 'none known'
    assert lines[:3] == printed[:3] and lines[2].startswith('CPU: ') and \
        lines[2].endswith(f'; ISA: {flags}')
    rows = [line for line in lines if line.startswith('| RepViT-M0.6 |')]
    assert [row.split('|')[2].strip() for row in rows] == [
        'deploy', 'openvino', 'onnxruntime+int8']
    assert all('| 1x3x32x32 | 1 |' in row for row in rows)


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
    tool = import_tool('tools/analysis_tools/benchmark.py')
    monkeypatch.setattr(torch.cuda, 'get_device_name',
                        lambda device=None: f'the GPU of {device}')
    lines = tool.header(argparse.Namespace(device='cuda:1'))
    assert lines[-1] == 'GPU: the GPU of cuda:1'
    args = parse_tool_args(monkeypatch, 'benchmark.py', '--arch', 'm0_6',
                           '--device', 'cpu:0')
    assert args.device == 'cpu'


