# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""On a CUDA GPU: fusion, fused checkpoints, the whole-model fuse and the
benchmark tool compute there what they compute on the CPU. Skipped without
a GPU (CI has none); the same file runs on one with
``python -m pytest tests/test_cuda.py``.

Comparisons run in true float32: TF32 (PyTorch's default for cuDNN
convolutions on Ampere and later) rounds products to 10-bit mantissas,
which alone moves outputs by ~1e-3 relative."""
import runpy
import sys

import pytest
import torch

from helpers import REPO, randomize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA GPU')

DET = REPO / 'configs/det/repvit_m0_6_maskrcnn_demo.py'
SEG = REPO / 'configs/seg/repvit_m0_6_fpn_demo.py'
TOL = 1e-4   # relative: float32 rounding (fusion, kernel order CPU vs GPU)


@pytest.fixture(autouse=True)
def float32_convolutions():
    flags = torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32 = flags


def rel_err(a, b):
    a, b = a.float().cpu(), b.float().cpu()
    return ((a - b).abs().max() / b.abs().max()).item()


def built(config):
    """The config's model with seeded random weights and random BatchNorm
    statistics in the backbone (so fusion errors show), on the CPU."""
    from mmengine.logging import MMLogger

    from mmrepvit.apis import build_model
    from mmrepvit.utils.config import load_config
    MMLogger.get_instance('test_cuda', log_level='WARNING')
    cfg = load_config(str(config))
    model = build_model(cfg)
    randomize(model.backbone, seed=3)
    return cfg, model


def test_backbone_fusion_on_cuda():
    from mmrepvit import RepViT
    model = randomize(RepViT('m0_6')).eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        on_cpu = model(x)
        model.cuda()
        training = model(x.cuda())
        model.switch_to_deploy()
        deploy = model(x.cuda())
        with torch.autocast('cuda', dtype=torch.float16):
            fp16 = model(x.cuda())
    assert all(p.is_cuda for p in model.parameters())
    for c, t, d, h in zip(on_cpu, training, deploy, fp16):
        assert d.shape == c.shape and d.is_cuda
        assert rel_err(t, c) < TOL
        assert rel_err(d, c) < TOL
        # autocast ran the convolutions in float16, without overflow (its
        # rounding is not compared: with these random BatchNorm statistics
        # the outputs come from large cancelling terms)
        assert h.dtype == torch.float16 and torch.isfinite(h).all()


@torch.no_grad()
def seg_logits(model, cfg, device):
    from mmrepvit.utils.benchmark import Subject
    model.to(device)
    data = Subject.of(cfg).inputs(model, 2, (64, 96))
    return model(data['inputs'], data['data_samples'], mode='tensor')


def test_seg_fused_checkpoint_on_cuda(tmp_path):
    """A fused checkpoint loaded by mmseg's init_model onto the GPU switches
    the backbone to its deploy form there and gives the CPU's logits; the
    whole-model fuse with channels_last does too."""
    from mmseg.apis import init_model

    from mmrepvit.apis import fuse_checkpoint, fuse_model
    cfg, model = built(SEG)
    reference = seg_logits(model, cfg, 'cpu')
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'train.pth')
    fuse_checkpoint(str(SEG), str(tmp_path / 'train.pth'),
                    str(tmp_path / 'fused.pth'))
    fused = init_model(str(SEG), str(tmp_path / 'fused.pth'), device='cuda')
    assert fused.backbone.deploy
    assert all(p.is_cuda for p in fused.parameters())
    out = seg_logits(fused, cfg, 'cuda')
    assert out.is_cuda and out.shape == reference.shape
    assert rel_err(out, reference) < TOL

    on_gpu = fuse_model(model.cuda(), channels_last=True)
    out = seg_logits(on_gpu, cfg, 'cuda')
    assert model.backbone.deploy and out.is_contiguous()
    assert rel_err(out, reference) < TOL


@torch.no_grad()
def test_det_on_cuda():
    """Mask R-CNN on the GPU (mmcv's CUDA RoIAlign and NMS): the fused
    backbone + FPN give the CPU's features, and predict returns boxes,
    scores and masks there."""
    from mmrepvit.apis import fuse_model
    from mmrepvit.utils.benchmark import Subject
    cfg, model = built(DET)
    data = Subject.of(cfg).inputs(model, 2, (96, 128))
    reference = model.extract_feat(data['inputs'])
    fuse_model(model.cuda(), channels_last=True)
    data = Subject.of(cfg).inputs(model, 2, (96, 128))
    assert data['inputs'].is_cuda
    feats = model.extract_feat(data['inputs'])
    assert len(feats) == len(reference)
    for a, b in zip(feats, reference):
        assert a.shape == b.shape and rel_err(a, b) < TOL
    results = model(**data, mode='predict')
    assert len(results) == 2
    for sample in results:
        pred = sample.pred_instances
        n = len(pred)
        assert pred.bboxes.is_cuda and pred.bboxes.shape == (n, 4)
        assert pred.scores.shape == (n, ) and pred.labels.shape == (n, )
        assert pred.masks.shape[0] == n
        assert tuple(pred.masks.shape[1:]) == tuple(sample.ori_shape)


def test_benchmark_tool_on_cuda(tmp_path, monkeypatch):
    """The benchmark on CUDA: float16 forms on, onnxruntime (CPU only) left
    out with a note, the device in the threads column."""
    out = tmp_path / 'report.md'
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', str(SEG), '--split', '--device', 'cuda',
        '--cuda-amp', '--forms', 'deploy', 'onnxruntime', '--sizes', '64',
        '--warmup', '0', '--min-run-time', '0.001', '--rounds', '1',
        '--out', str(out)])
    runpy.run_path('tools/analysis_tools/benchmark.py', run_name='__main__')
    text = out.read_text()
    assert 'device cuda' in text and 'GPU: ' in text
    for form in ('deploy', 'deploy+fp16', 'deploy+channels_last+fp16'):
        for task in ('backbone', 'features', 'predict'):
            assert (f'| RepViT-M0.6 EncoderDecoder | {form} | {task} | '
                    f'1x3x64x64 | cuda |') in text, (form, task)
    assert '| onnxruntime |' not in text
