# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The upstream workarounds on the PyTorch versions they are for, driven
here by removing what newer PyTorch releases have."""
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from helpers import REPO
from mmrepvit.utils import compat, read_checkpoint
from mmrepvit.utils.compat import onnx_export_kwargs, safe_load_kwargs


class _Touches:
    """Unpickled, it creates the file ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import os
        return (os.system, (f'touch {self.path}', ))


def test_checkpoints_without_add_safe_globals(tmp_path, monkeypatch):
    """Before PyTorch 2.4 (no add_safe_globals; a weights-only unpickler
    that cannot rebuild MMEngine's objects) a restricted unpickler reads
    MMEngine's checkpoints and refuses code, as weights_only does."""
    if hasattr(torch.serialization, 'add_safe_globals'):   # >= 2.4
        assert safe_load_kwargs() == dict(weights_only=True)
    monkeypatch.delattr(torch.serialization, 'add_safe_globals',
                        raising=False)
    assert safe_load_kwargs()['weights_only'] is False
    monkeypatch.setattr(compat, 'SAFE_LOAD_KWARGS', safe_load_kwargs())
    history = HistoryBuffer()
    history.update(2.0)
    torch.save({'state_dict': {'w': torch.arange(3.)},
                'message_hub': {'loss': history, 'steps': np.arange(3),
                                'lr': np.float64(0.5),
                                'seen': Counter(a=2)}},
               tmp_path / 'iter_2.pth')
    ckpt = read_checkpoint(str(tmp_path / 'iter_2.pth'))
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.))
    assert ckpt['message_hub']['loss'].mean() == 2.0
    assert ckpt['message_hub']['steps'].tolist() == [0, 1, 2]
    assert ckpt['message_hub']['lr'] == 0.5
    assert ckpt['message_hub']['seen'] == Counter(a=2)
    torch.save({'x': _Touches(str(tmp_path / 'ran'))}, tmp_path / 'evil.pth')
    with pytest.raises(RuntimeError, match=r'Refusing to load.*'
                       r'Refusing GLOBAL \w+\.system'):
        read_checkpoint(str(tmp_path / 'evil.pth'))


def _check_mmengine_reads(directory, location):
    """Through MMEngine's loaders, a pickle that runs a command is refused
    (the command does not run), and a training checkpoint loads with
    MMEngine's state; ``location(name)``: where ``directory / name`` is
    read from."""
    from mmengine.runner import CheckpointLoader, load_checkpoint
    flag = directory / 'ran'
    torch.save({'x': _Touches(str(flag))}, directory / 'evil.pth')
    with pytest.raises(RuntimeError, match=r'Refusing to load .*evil\.pth'):
        CheckpointLoader.load_checkpoint(location('evil.pth'))
    assert not flag.exists()
    history = HistoryBuffer()
    history.update(1.5)
    model = torch.nn.Linear(2, 3)
    torch.save({'state_dict': model.state_dict(),
                'message_hub': {'loss': history}}, directory / 'iter_1.pth')
    target = torch.nn.Linear(2, 3)
    ckpt = load_checkpoint(target, location('iter_1.pth'), map_location='cpu',
                           strict=True)
    assert torch.equal(target.weight, model.weight)
    assert ckpt['message_hub']['loss'].mean() == 1.5


def test_mmengine_loads_are_safe_before_pytorch_2_6(tmp_path, monkeypatch):
    """Before PyTorch 2.6 (torch.load unpickles anything by default)
    MMEngine's CheckpointLoader, which load_from, resume and tools/test.py
    use, reads local files with read_checkpoint: code is refused, tensors
    and MMEngine's own state load; from 2.6 its local reading is kept."""
    from mmengine.runner import CheckpointLoader
    from mmengine.runner import checkpoint as mmengine_checkpoint
    monkeypatch.setattr(CheckpointLoader, '_schemes',
                        dict(CheckpointLoader._schemes))
    for name in ('load_url', 'load_from_local'):
        monkeypatch.setattr(mmengine_checkpoint, name,
                            getattr(mmengine_checkpoint, name))
    local = CheckpointLoader._schemes['']
    monkeypatch.setattr(torch, '__version__', '2.6.0')
    assert compat.safe_mmengine_loads(read_checkpoint) is False
    assert CheckpointLoader._schemes[''] is local
    assert mmengine_checkpoint.load_from_local is local
    monkeypatch.setattr(torch, '__version__', '2.1.2+cu121')
    assert compat.safe_mmengine_loads(read_checkpoint) is True
    loader = CheckpointLoader._get_checkpoint_loader('x.pth')
    assert loader is not local and loader.__module__ == compat.__name__
    assert loader.__name__ == 'load_from_local'   # named as MMEngine logs it
    assert mmengine_checkpoint.load_from_local is loader   # open-mmlab://

    _check_mmengine_reads(tmp_path, lambda name: str(tmp_path / name))
    (tmp_path / 'cut.pth').write_bytes(
        (tmp_path / 'iter_1.pth').read_bytes()[:100])
    with pytest.raises(ValueError, match='not a valid PyTorch checkpoint'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'cut.pth'))


def test_mmengine_downloads_are_safe_on_every_pytorch(served, tmp_path):
    """MMEngine 0.10.7 downloads (load_from or tools/test.py with a URL,
    open-mmlab:// and torchvision:// names, other modules' Pretrained init)
    with torch.hub.load_state_dict_from_url, whose weights_only is False on
    every PyTorch: after importing mmrepvit a downloaded pickle that calls
    os.system is refused, and weights and MMEngine's state load."""
    from mmengine.runner import CheckpointLoader
    root, url = served
    _check_mmengine_reads(root, lambda name: f'{url}/{name}')
    with pytest.raises(ConnectionError, match=r'Could not download the '
                       r'checkpoint .*/missing\.pth .*/path/to/missing\.pth'):
        CheckpointLoader.load_checkpoint(f'{url}/missing.pth')


def test_onnx_export_is_torchscript_with_and_without_dynamo():
    calls = []

    def without_dynamo(model, args, f, opset_version=None):
        calls.append(dict(opset_version=opset_version))

    def with_dynamo(model, args, f, opset_version=None, dynamo=True):
        calls.append(dict(opset_version=opset_version, dynamo=dynamo))

    for export in (without_dynamo, with_dynamo):
        export(None, (), 'x.onnx', opset_version=17,
               **onnx_export_kwargs(export))
    assert calls == [dict(opset_version=17),
                     dict(opset_version=17, dynamo=False)]


def test_quantization_without_a_calibration_cache(monkeypatch, tmp_path):
    """onnxruntime 1.23 and older (Python 3.10) have no calibration cache:
    every quantization calibrates again, to the same model."""
    import numpy as np
    from onnxruntime import quantization as q

    from mmrepvit import RepViT
    from mmrepvit.apis import export_onnx, quantize_onnx
    torch.manual_seed(0)
    fp32 = str(tmp_path / 'fp32.onnx')
    export_onnx(RepViT('m0_6').eval(), fp32, (32, 32))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32),
                                                 dtype=np.float32)
    quantize_onnx(fp32, str(tmp_path / 'cached.onnx'), [x])
    real, seen = q.quantize_static, []

    def old(model_input, model_output, calibration_data_reader=None,
            **kwargs):
        seen.append(sorted(kwargs))
        return real(model_input, model_output, calibration_data_reader,
                    **kwargs)
    monkeypatch.setattr(q, 'quantize_static', old)
    assert compat.calibration_cache_kwargs('ranges') == {}
    quantize_onnx(fp32, str(tmp_path / 'old.onnx'), [x])
    assert seen and 'calibration_cache_path' not in seen[0]
    # The files, not their outputs: onnxruntime 1.21-1.23 runs one INT8
    # file to different outputs from one session to the next on AMX CPUs.
    assert (tmp_path / 'cached.onnx').read_bytes() == \
        (tmp_path / 'old.onnx').read_bytes()


def test_cpu_distributed_replaces_syncbn():
    """Without CUDA, the gloo fallback turns SyncBN into BN (PyTorch's
    SyncBatchNorm raises on CPU tensors in a process group)."""
    from mmengine.config import Config

    from mmrepvit.utils.compat import replace_syncbn
    cfg = Config.fromfile(str(REPO / 'configs/seg/repvit_m1_1_fpn_ade20k.py'))
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert replace_syncbn(cfg.model)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert not replace_syncbn(cfg.model)
