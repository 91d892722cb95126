# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What the synthetic demo dataset generators have in common.

``tools/make_demo_coco.py`` and ``tools/make_demo_ade.py`` each draw their own
images and write them in their own layout; this module holds the rest: the
pixel helpers both draw with, the ``meta.json`` bookkeeping that makes a
second run with the same settings a no-op (and a run with other settings or
``--force`` a clean regeneration), and the command line. It is imported as a
top-level module, so ``tools/`` must be on ``sys.path``: it is when a
generator runs as ``python tools/make_demo_*.py``, and callers that import a
generator put it there anyway.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import shutil
import time

import numpy as np

META_FILE = 'meta.json'


# ----------------------------------------------------------------- drawing
def pixel_grid(size):
    """Pixel-centre coordinates ``(xx, yy)``, each of shape (size, size)."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords)


def rasterise(polygon, size):
    """Mask of the pixels whose centres lie inside ``polygon`` (even-odd).

    This is the rule pycocotools follows too, so a shape's mask and its
    polygon annotation agree.
    """
    centres = np.arange(size) + 0.5
    mask = np.zeros((size, size), dtype=bool)
    starts, ends = polygon, np.roll(polygon, -1, axis=0)
    for (xa, ya), (xb, yb) in zip(starts, ends):
        if ya == yb:
            continue
        rows = (ya > centres) != (yb > centres)  # rows that this edge crosses
        x_cross = xa + (centres[rows] - ya) * (xb - xa) / (yb - ya)
        mask[rows] ^= centres[None, :] < x_cross[:, None]
    return mask


# ------------------------------------------------------ meta.json and files
def read_meta(out_dir):
    """The contents of ``out_dir``'s meta.json, or None if it is unreadable."""
    try:
        with open(osp.join(out_dir, META_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_complete(out_dir, settings, has_outputs):
    """Whether ``out_dir`` holds a whole dataset made with ``settings``.

    ``has_outputs(out_dir)`` says whether the generator's files are there.
    """
    meta = read_meta(out_dir)
    return (meta is not None and meta.get('settings') == settings
            and has_outputs(out_dir))


def remove_outputs(out_dir, folders):
    """Delete ``folders`` (names under ``out_dir``) and the meta.json."""
    for name in folders:
        shutil.rmtree(osp.join(out_dir, name), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(osp.join(out_dir, META_FILE))


def write_meta(out_dir, settings, summary):
    """Write the meta.json; written last, its presence marks a whole set."""
    with open(osp.join(out_dir, META_FILE), 'w') as f:
        json.dump(dict(settings=settings, summary=summary), f, indent=2)


def generate_dataset(out_dir, seed, num_train, num_val, size, force, *,
                     format_version, min_size, splits, folders, has_outputs,
                     generate_split):
    """The body of a generator's ``generate``.

    Checks the arguments; keeps ``out_dir`` if it already holds the same
    dataset (unless ``force``); otherwise removes ``folders`` and the
    meta.json, calls ``generate_split(out_dir, split, split_index,
    num_images, seed, size)`` for the train and the val split of ``splits``
    in turn and writes the meta.json with their returned counts.

    Returns:
        dict: The counts of each split, by split name, and ``generated``
        (False when an existing dataset was kept).
    """
    if seed < 0 or num_train < 0 or num_val < 0:
        raise ValueError('seed, num_train and num_val must be >= 0')
    if size < min_size:
        raise ValueError(f'size must be at least {min_size}, got {size}')
    settings = dict(
        format_version=format_version,
        seed=seed,
        num_train=num_train,
        num_val=num_val,
        size=size)
    if not force and is_complete(out_dir, settings, has_outputs):
        print(f'{out_dir}: already generated')
        return dict(read_meta(out_dir)['summary'], generated=False)

    remove_outputs(out_dir, folders)
    summary = {
        split: generate_split(out_dir, split, index, num, seed, size)
        for index, (split, num) in enumerate(zip(splits,
                                                 (num_train, num_val)))
    }
    write_meta(out_dir, settings, summary)
    return dict(summary, generated=True)


# ------------------------------------------------------------ command line
def parse_args(description, default_out, check_help):
    """Parse a generator's command line (the same flags for each)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--out', default=default_out, help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--num-train', type=int, default=120, help='number of train images')
    parser.add_argument(
        '--num-val', type=int, default=30, help='number of val images')
    parser.add_argument(
        '--size', type=int, default=256, help='image width and height')
    parser.add_argument(
        '--force',
        action='store_true',
        help='regenerate even if the same dataset is already there')
    parser.add_argument('--check', action='store_true', help=check_help)
    return parser.parse_args()


def main(args, generate, check):
    """Run a generator on parsed ``args``: generate, then check, or check."""
    if args.check:
        check(args.out)
        return
    start = time.perf_counter()
    summary = generate(args.out, args.seed, args.num_train, args.num_val,
                       args.size, args.force)
    if summary['generated']:
        print(f'generated {args.out} in {time.perf_counter() - start:.1f} s')
        check(args.out)
