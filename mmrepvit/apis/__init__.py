# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .fuse import (
    find_repvits,
    fuse_model,
    switch_to_deploy,
    unwrap_model,
    use_channels_last,
)
from .model import (
    build_model,
    fuse_checkpoint,
    load_model_weights,
    repvit_backbone_cfg,
)
from .onnx_check import check_onnx_file, exported_part, load_onnx
from .onnx_export import (
    OnnxReport,
    ParityError,
    export_onnx,
    onnx_part,
    onnx_record,
    ort_session,
)
from .quantize import (
    AgreementError,
    QuantizeReport,
    preprocessed_images,
    quantize_onnx,
)
from .runtime import OnnxRunner, cpu_flags, saturates_int8

__all__ = ['find_repvits', 'fuse_checkpoint', 'fuse_model',
           'repvit_backbone_cfg', 'switch_to_deploy', 'unwrap_model',
           'use_channels_last', 'build_model', 'load_model_weights',
           'OnnxReport', 'ParityError', 'check_onnx_file', 'export_onnx',
           'exported_part', 'load_onnx', 'onnx_part', 'onnx_record',
           'ort_session', 'OnnxRunner',
           'cpu_flags', 'saturates_int8', 'AgreementError', 'QuantizeReport',
           'preprocessed_images', 'quantize_onnx']
