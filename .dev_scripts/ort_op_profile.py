#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Where an ONNX model's time goes in onnxruntime, by operator type.

    python .dev_scripts/ort_op_profile.py MODEL.onnx [MODEL2.onnx ...] \\
        [--shape 1 3 512 512] [--threads 2] [--runs 20]

Runs each file with onnxruntime's profiler (after warm-up runs) and prints,
per operator type of the optimised graph onnxruntime executes (e.g.
QLinearConv, QuantizeLinear, DequantizeLinear, Conv, Erf), its share of the
kernel time and milliseconds per run. Used to tell, for an INT8 model,
how much time the integer kernels, the quantize / dequantize steps and the
parts left in float take (docs/deploy.md).
"""
import argparse
import collections
import json
import os

import numpy as np
import onnxruntime as ort


def profile(path, shape, threads, runs):
    options = ort.SessionOptions()
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    warm = ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])
    name = warm.get_inputs()[0].name
    for _ in range(3):
        warm.run(None, {name: x})
    options.enable_profiling = True
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    for _ in range(runs + 3):
        session.run(None, {name: x})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_op = collections.Counter()
    for e in events:
        if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time'):
            per_op[e['args']['op_name']] += e['dur']
    # the first runs of the profiled session are left out with the rest:
    # durations are summed over all runs and divided by their number
    return {op: us / (runs + 3) / 1e3 for op, us in per_op.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+')
    parser.add_argument('--shape', type=int, nargs=4,
                        default=[1, 3, 512, 512])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=20)
    args = parser.parse_args()
    for path in args.models:
        ms = profile(path, args.shape, args.threads, args.runs)
        total = sum(ms.values())
        print(f'\n{path}, input {"x".join(map(str, args.shape))}, '
              f'{args.threads} threads: {total:.1f} ms of kernels per run')
        print('| operator | ms per run | share |\n|---|---|---|')
        for op, t in sorted(ms.items(), key=lambda kv: -kv[1]):
            if t / total >= 0.005:
                print(f'| {op} | {t:.2f} | {t / total:.0%} |')


if __name__ == '__main__':
    main()
