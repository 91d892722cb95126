#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""How much memory does ``with_cp`` save? Peak memory that one training step
(forward + backward) of a RepViT backbone adds, with_cp off and on, each in
a fresh process so that earlier work does not hide the peak: on CPU the
peak resident set size over the resident size just before the step
(Linux: reads /proc), on CUDA the peak allocated memory over that before.

    python .dev_scripts/with_cp_memory.py --arch m1_1 --sizes 512 \
        --batch-sizes 2
"""
import argparse
import multiprocessing
import resource

import torch


def rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def one_step(arch, size, batch, with_cp, threads, device, queue):
    from mmrepvit import RepViT
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = RepViT(arch, with_cp=with_cp).train().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    cuda = torch.device(device).type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else rss_bytes()
    sum(o.mean() for o in model(x)).backward()
    peak = torch.cuda.max_memory_allocated(device) if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((peak - base) / 2**20)


def step_memory(*args) -> float:
    """MiB one training step adds to the peak, in a fresh process."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=one_step, args=(*args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f'The measurement process exited with status '
                         f'{proc.exitcode} (its error is printed above).')
    return queue.get(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', nargs='+', default=['m1_1'])
    parser.add_argument('--sizes', nargs='+', type=int, default=[512])
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[2])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    print('| backbone | input | without with_cp, MiB | with_cp, MiB | ratio |'
          '\n|---|---|---|---|---|')
    for arch in args.arch:
        for size in args.sizes:
            for batch in args.batch_sizes:
                off, on = (step_memory(arch, size, batch, cp, args.threads,
                                       args.device) for cp in (False, True))
                print(f'| {arch} | {batch}x3x{size}x{size} | {off:.0f} | '
                      f'{on:.0f} | {on / off:.2f} |', flush=True)


if __name__ == '__main__':
    main()
