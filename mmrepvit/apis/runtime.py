# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Run an ONNX file on the CPU in onnxruntime or OpenVINO (fp32 or bf16)."""
import os.path as osp
import platform
from typing import List, Optional, Sequence

import numpy as np

from .onnx_check import load_onnx
from .onnx_export import ort_session

#: Backends and the precisions each runs an ONNX file in.
BACKENDS = {'onnxruntime': ('fp32', ), 'openvino': ('fp32', 'bf16')}
#: CPU flags (Linux names) that decide reduced-precision speed.
ISA_FLAGS = ('avx2', 'avx512f', 'avx_vnni', 'avx512_vnni', 'avx512_bf16',
             'amx_bf16', 'amx_int8')


def cpu_flags(path: str = '/proc/cpuinfo') -> List[str]:
    """The :data:`ISA_FLAGS` listed in ``path`` (none where unreadable)."""
    try:
        with open(path) as f:
            flags = next((line.split(':', 1)[1].split() for line in f
                          if line.startswith('flags')), [])
    except OSError:
        flags = []
    return [f for f in ISA_FLAGS if f in flags]


def saturates_int8() -> bool:
    """Whether onnxruntime's and OpenVINO's uint8 x int8 products can
    saturate on this CPU: x86 without VNNI (AVX2 only), where 8-bit weights
    give wrong outputs and 7-bit ones (``reduce_range``) are needed."""
    x86 = platform.machine().lower() in ('x86_64', 'amd64', 'i386', 'i686')
    vnni = {'avx_vnni', 'avx512_vnni', 'amx_int8'} & set(cpu_flags())
    return x86 and not vnni


def _opened(open_file, path: str, *args):
    """``open_file(path, *args)``, a runtime reading an ONNX file; where it
    cannot, :func:`load_onnx` names a file that is no ONNX model (the
    runtimes' own errors do not), parsing it only then."""
    try:
        return open_file(path, *args)
    except Exception:   # onnxruntime's and OpenVINO's own types
        load_onnx(path)
        raise


class OnnxRunner:
    """An ONNX file ready to run: ``runner(x)`` returns its numpy outputs, in
    the file's order, for a preprocessed N x 3 x H x W float32 batch ``x``.

    Args:
        path (str): The ``.onnx`` file (float32 or quantized QDQ).
        backend (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to
            ``'onnxruntime'``.
        precision (str): ``'fp32'``, or ``'bf16'`` (OpenVINO only).
            Defaults to ``'fp32'``.
        threads (int, optional): Intra-op threads. Defaults to None: the
            backend's choice.
        shape (Sequence[int], optional): OpenVINO: compile for this input
            shape only (faster). Defaults to None.

    Raises:
        ValueError: An unknown backend or precision, bf16 on a CPU
            without it, or a file that is no ONNX model.
        FileNotFoundError: ``path`` does not exist.
        ImportError: The openvino backend without the openvino package.
    """

    def __init__(self, path: str, backend: str = 'onnxruntime',
                 precision: str = 'fp32', threads: Optional[int] = None,
                 shape: Optional[Sequence[int]] = None):
        if precision not in BACKENDS.get(backend, ()):
            raise ValueError(
                f'backend {backend!r} with precision {precision!r}: choose '
                + '; '.join(f'{b} ({", ".join(p)})'
                            for b, p in BACKENDS.items()) + '.')
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX file {path!r} does not exist; '
                                    f'export one with '
                                    f'tools/deploy/export_onnx.py.')
        self.backend, self.precision = backend, precision
        if backend == 'onnxruntime':
            session = _opened(ort_session, path, threads)
            self.output_names = [o.name for o in session.get_outputs()]
            name = session.get_inputs()[0].name
            self._run = lambda x: session.run(None, {name: x})
            return
        try:
            import openvino as ov
        except ImportError as e:
            raise ImportError(f'The openvino backend needs the openvino '
                              f'package ({e}): bash tools/install.sh installs '
                              f'it (pip install -r requirements.txt).') from e
        core = ov.Core()
        model = _opened(core.read_model, path)
        if shape is not None:
            model.reshape(list(shape))
        compiled = core.compile_model(model, 'CPU', {
            'INFERENCE_PRECISION_HINT': precision.replace('fp', 'f'),
            'PERFORMANCE_HINT': 'LATENCY',
            **({'INFERENCE_NUM_THREADS': threads} if threads else {})})
        actual = compiled.get_property('INFERENCE_PRECISION_HINT')
        if precision == 'bf16' and actual != ov.Type.bf16:
            raise ValueError(
                f'OpenVINO runs {actual}, not bf16, on this CPU: bfloat16 '
                f'needs AMX or AVX-512 BF16 (this CPU has: '
                f'{", ".join(cpu_flags()) or "none of them"}). Use fp32.')
        self.output_names = [o.get_any_name() for o in compiled.outputs]
        request = compiled.create_infer_request()
        self._run = lambda x: [np.array(o) for o in request.infer(
            [x], share_inputs=True).values()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))
