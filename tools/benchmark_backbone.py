#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Backbone speed and memory, measured side by side in one run.

Latency (median over --repeats, eval mode, no grad) of:
  naive     a straightforward implementation of the reference structure
            (below, written from the reference's description only),
  train     mmrepvit.RepViT in training form,
  deploy    RepViT after switch_to_deploy(),
  deploy_cl deploy form with channels_last input and weights,
and the ratios train/naive, train/deploy and train/deploy_cl.

Peak memory of one training step (forward + backward, training mode) with and
without with_cp, each in a fresh process: the growth of the peak resident set
size over the resident size just before the step.

    python tools/benchmark_backbone.py --arches m1_1 --sizes 512 \
        --batch-sizes 1 --threads 2
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# A straightforward implementation of the reference structure (section 1 of
# the reference), with the same parameter names, used as the speed baseline.
class NaiveConvBN(nn.Sequential):

    def __init__(self, in_channels, out_channels, k=1, s=1, p=0, g=1):
        super().__init__()
        self.add_module('c', nn.Conv2d(in_channels, out_channels, k, s, p, groups=g,
                                       bias=False))
        self.add_module('bn', nn.BatchNorm2d(out_channels))


class NaiveSE(nn.Module):

    def __init__(self, c):
        super().__init__()
        r = max(8, int(c / 4 + 4) // 8 * 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class NaiveRepVGGDW(nn.Module):

    def __init__(self, c):
        super().__init__()
        self.conv = NaiveConvBN(c, c, 3, 1, 1, c)
        self.conv1 = nn.Conv2d(c, c, 1, 1, 0, groups=c)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x) + self.conv1(x) + x)


class NaiveResidual(nn.Module):

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class NaiveBlock(nn.Module):

    def __init__(self, in_channels, out_channels, stride, se):
        super().__init__()
        se_layer = NaiveSE(in_channels) if se else nn.Identity()
        if stride == 1:
            self.token_mixer = nn.Sequential(NaiveRepVGGDW(in_channels), se_layer)
        else:
            self.token_mixer = nn.Sequential(
                NaiveConvBN(in_channels, in_channels, 3, 2, 1, in_channels), se_layer,
                NaiveConvBN(in_channels, out_channels))
        self.channel_mixer = NaiveResidual(nn.Sequential(
            NaiveConvBN(out_channels, 2 * out_channels), nn.GELU(),
            NaiveConvBN(2 * out_channels, out_channels)))

    def forward(self, x):
        return self.channel_mixer(self.token_mixer(x))


class NaiveRepViT(nn.Module):

    def __init__(self, arch, out_indices):
        super().__init__()
        from mmrepvit import block_settings
        blocks = block_settings(**arch)
        stem_width = blocks[0].width
        layers = [nn.Sequential(
            NaiveConvBN(3, stem_width // 2, 3, 2, 1), nn.GELU(),
            NaiveConvBN(stem_width // 2, stem_width, 3, 2, 1))]
        in_channels = stem_width
        for block in blocks:
            layers.append(NaiveBlock(in_channels, block.width, block.stride,
                                     block.use_se))
            in_channels = block.width
        self.features = nn.ModuleList(layers)
        self.out_indices = out_indices

    def forward(self, x):
        outs = []
        for i, f in enumerate(self.features):
            x = f(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


# --------------------------------------------------------------------------
def median_ms(model, x, warmup, repeats):
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def latency(arch, size, batch, warmup, repeats):
    from mmrepvit import RepViT
    train = RepViT(arch).eval()
    naive = NaiveRepViT(train.arch_settings,
                        [train.stage_outputs[i] for i in train.out_indices]).eval()
    naive.load_state_dict(train.state_dict(), strict=True)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-5)
                   for a, b in zip(naive(x), train(x)))
    # Interleave the forms so drift in machine load hits all of them alike.
    deploy = RepViT(arch).eval()
    deploy.load_state_dict(train.state_dict())
    deploy.switch_to_deploy()
    deploy_cl = RepViT(arch).eval()
    deploy_cl.load_state_dict(train.state_dict())
    deploy_cl.switch_to_deploy()
    deploy_cl = deploy_cl.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    rounds = {k: [] for k in ('naive', 'train', 'deploy', 'deploy_cl')}
    per_round = max(1, repeats // 5)
    for _ in range(5):
        rounds['naive'].append(median_ms(naive, x, warmup, per_round))
        rounds['train'].append(median_ms(train, x, warmup, per_round))
        rounds['deploy'].append(median_ms(deploy, x, warmup, per_round))
        rounds['deploy_cl'].append(
            median_ms(deploy_cl, x_cl, warmup, per_round))
    return {k: statistics.median(v) for k, v in rounds.items()}


def memory_child(arch, size, batch, with_cp):
    """Run in a fresh process: peak RSS growth of one training step."""
    from mmrepvit import RepViT
    torch.manual_seed(0)
    model = RepViT(arch, with_cp=with_cp).train()
    x = torch.randn(batch, 3, size, size)
    base = _rss_kib()
    sum(o.mean() for o in model(x)).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(step_peak_mib=(peak - base) / 1024,
                          peak_rss_mib=peak / 1024)))


def _rss_kib():
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arches', nargs='+', default=['m1_1'])
    parser.add_argument('--sizes', nargs='+', type=int, default=[512])
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1])
    parser.add_argument('--threads', nargs='+', type=int, default=[2])
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=25)
    parser.add_argument('--memory-arch', default='m1_1')
    parser.add_argument('--memory-size', type=int, default=512)
    parser.add_argument('--memory-batch', type=int, default=2)
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--_memory-child', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        a, s, b, cp = args._memory_child
        torch.set_num_threads(args.threads[0])
        return memory_child(a, int(s), int(b), cp == '1')

    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads '
          f'available, CPU: {_cpu_name()}')
    header = (f'{"arch":<6} {"input":<14} {"thr":>3} {"naive":>9} '
              f'{"train":>9} {"deploy":>9} {"deploy_cl":>9} '
              f'{"train/naive":>11} {"train/deploy":>12} '
              f'{"train/deploy_cl":>15}')
    print('latency, median ms per forward (eval, no grad)')
    print(header)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for arch in args.arches:
            for size in args.sizes:
                for batch in args.batch_sizes:
                    r = latency(arch, size, batch, args.warmup, args.repeats)
                    print(f'{arch:<6} {f"{batch}x3x{size}x{size}":<14} '
                          f'{threads:>3} {r["naive"]:>9.1f} '
                          f'{r["train"]:>9.1f} {r["deploy"]:>9.1f} '
                          f'{r["deploy_cl"]:>9.1f} '
                          f'{r["train"] / r["naive"]:>11.2f} '
                          f'{r["train"] / r["deploy"]:>12.2f} '
                          f'{r["train"] / r["deploy_cl"]:>15.2f}',
                          flush=True)
    if args.skip_memory:
        return
    print(f'\npeak memory of one training step, {args.memory_arch} '
          f'{args.memory_batch}x3x{args.memory_size}x{args.memory_size} '
          f'(fresh process each)')
    results = {}
    for cp in ('0', '1'):
        out = subprocess.run(
            [sys.executable, __file__, '--threads', str(args.threads[0]),
             '--_memory-child', args.memory_arch, str(args.memory_size),
             str(args.memory_batch), cp], capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        results[cp] = json.loads(out)
        print(f'  with_cp={cp == "1"!s:<5}  step peak '
              f'{results[cp]["step_peak_mib"]:8.1f} MiB   '
              f'(process peak RSS {results[cp]["peak_rss_mib"]:.0f} MiB)')
    print(f'  with_cp / without: '
          f'{results["1"]["step_peak_mib"] / results["0"]["step_peak_mib"]:.2f}')


def _cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


if __name__ == '__main__':
    main()
