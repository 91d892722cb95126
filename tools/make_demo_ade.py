# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Generate a tiny synthetic semantic segmentation dataset in ADE20K's layout.

The dataset exists so that Semantic FPN with a RepViT backbone can be trained
and evaluated end to end on a CPU in minutes. Each image is a "landscape" of
wavy horizontal bands and blobs of five stuff classes, each with its own
colour and texture statistics (sky: blue gradient with faint clouds, grass:
noisy green streaks, water: blue-green ripples, brick: red brick wall, sand:
yellowish speckle) under random hue and brightness jitter, plus clutter of
label 0 ("other", which ``reduce_zero_label=True`` turns into the ignore
index). The output is byte-identical for a given seed::

    OUT/images/training/demo_000001.jpg       OUT/images/validation/...
    OUT/annotations/training/demo_000001.png  OUT/annotations/validation/...
    OUT/meta.json                             # the settings it was made with

Labels are single-channel uint8 PNGs: 0 is "other", 1-5 follow ``CLASSES``.

Usage::

    python tools/make_demo_ade.py --out data/demo_ade --seed 0 \\
        --num-train 120 --num-val 30 --size 256 [--force]
    python tools/make_demo_ade.py --out data/demo_ade --check

A second run with the same settings only prints "already generated". Needs
numpy and Pillow.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image

import _demo_data

CLASSES = ('sky', 'grass', 'water', 'brick', 'sand')
PALETTE = [[135, 206, 250], [34, 139, 34], [0, 70, 160], [178, 34, 34],
           [238, 214, 175]]
SPLITS = ('training', 'validation')
# Bump when the drawing changes, so that old outputs get regenerated.
FORMAT_VERSION = 1

SKY, GRASS, WATER, BRICK, SAND = range(1, 6)
GROUND = (GRASS, WATER, BRICK, SAND)  # what bands below the top one show


def _smooth_noise(rng, size, cells):
    """Noise in [0, 1]: a ``cells`` (rows, cols) grid smoothly upsampled."""
    coarse = rng.random(cells).astype(np.float32)
    smooth = Image.fromarray(coarse).resize((size, size),
                                            Image.Resampling.BICUBIC)
    return np.clip(np.asarray(smooth), 0, 1)


def _jitter(rng, color):
    """``color`` under random brightness and per-channel (hue) jitter."""
    return np.asarray(color) * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15, 3)


# --------------------------------------------------------- class textures
# Each returns a float RGB image of the whole canvas; the caller cuts out
# the pixels of its class.


def _sky(rng, xx, yy):
    size = xx.shape[0]
    zenith = _jitter(rng, (40, 100, 210))
    horizon = _jitter(rng, (160, 205, 240))
    t = (yy / size)[..., None]
    image = zenith + (horizon - zenith) * t
    clouds = np.clip(_smooth_noise(rng, size, (4, 6)) - 0.55, 0, 1) * 1.5
    clouds *= rng.uniform(0, 1)  # from clear to cloudy
    image += (245 - image) * clouds[..., None]
    return image + rng.normal(0, 2, image.shape)


def _grass(rng, xx, yy):
    size = xx.shape[0]
    base = _jitter(rng, (70, 145, 45))
    blades = _smooth_noise(rng, size, (size // 8, size // 2)) - 0.5
    patches = _smooth_noise(rng, size, (5, 5)) - 0.5
    grain = rng.normal(0, 0.12, xx.shape)
    shade = 1 + 0.6 * blades + 0.3 * patches + grain
    return base * shade[..., None]


def _water(rng, xx, yy):
    size = xx.shape[0]
    base = _jitter(rng, (30, 110, 140))
    period = rng.uniform(0.03, 0.07) * size
    wobble = 0.25 * np.sin(2 * np.pi * xx / (rng.uniform(0.2, 0.5) * size) +
                           rng.uniform(0, 2 * np.pi))
    ripples = np.sin(2 * np.pi * (yy / period + wobble))
    glints = rng.normal(0, 6, xx.shape)
    return base + (28 * ripples + glints)[..., None]


def _brick(rng, xx, yy):
    size = xx.shape[0]
    height = rng.uniform(0.04, 0.07) * size
    width = height * rng.uniform(2, 2.6)
    mortar = max(1., 0.15 * height)
    row = (yy // height).astype(int)
    x = xx + (row % 2) * width / 2  # every other row shifted half a brick
    col = (x // width).astype(int)
    # every brick its own shade
    shades = rng.uniform(0.8, 1.15, (row.max() + 1, col.max() + 1))
    image = _jitter(rng, (165, 65, 45)) * shades[row, col][..., None]
    joints = (yy % height < mortar) | (x % width < mortar)
    image[joints] = _jitter(rng, (195, 190, 180))
    return image + rng.normal(0, 6, image.shape)


def _sand(rng, xx, yy):
    size = xx.shape[0]
    base = _jitter(rng, (215, 190, 135))
    dunes = 20 * (_smooth_noise(rng, size, (4, 4)) - 0.5)
    specks = rng.choice([-45., 0., 35.], p=[0.05, 0.9, 0.05], size=xx.shape)
    grain = rng.normal(0, 5, xx.shape)
    return base + (dunes + specks + grain)[..., None]


TEXTURES = {SKY: _sky, GRASS: _grass, WATER: _water, BRICK: _brick,
            SAND: _sand}


def _clutter(rng, xx, yy):
    """Mask and fill of an "other" thing: a solid or two-tone polygon."""
    size = xx.shape[0]
    num_vertices = rng.choice([3, 4, 5, 6, 24])
    radius = rng.uniform(0.06, 0.2) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, num_vertices))
    polygon = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    polygon *= rng.uniform(0.4, 1.6, 2)  # squash into poles and slabs
    mask = _demo_data.rasterise(polygon + rng.uniform(0, size, 2), size)

    color = rng.uniform(0, 255, 3)
    image = np.broadcast_to(color, xx.shape + (3, )).copy()
    if rng.random() < 0.5:
        period = rng.uniform(0.02, 0.06) * size
        stripes = (xx * rng.uniform(-1, 1) + yy) / period % 1 < 0.5
        image[stripes] = rng.uniform(0, 255, 3)
    return mask, image + rng.normal(0, 8, image.shape)


def _blob(rng, size):
    """Mask of a random smooth blob, possibly cut by the image border."""
    radius = rng.uniform(0.08, 0.22) * size
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radii = np.ones_like(angles)
    for k in (2, 3, 4):
        radii += rng.uniform(0, 0.15) * np.cos(k * angles +
                                              rng.uniform(0, 2 * np.pi))
    polygon = radius * radii[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], axis=1)
    polygon *= rng.uniform(0.7, 1.4, 2)
    return _demo_data.rasterise(polygon + rng.uniform(0, size, 2), size)


def _band_labels(rng, xx, yy):
    """Label map of 2-4 horizontal bands with wavy boundaries."""
    size = xx.shape[0]
    num_bands = int(rng.integers(2, 5))
    labels = [SKY if rng.random() < 0.75 else int(rng.choice(GROUND))]
    while len(labels) < num_bands:
        label = int(rng.choice(GROUND))
        if label != labels[-1]:
            labels.append(label)

    x = xx[0]
    band = np.zeros(xx.shape, dtype=int)
    cuts = np.sort(rng.uniform(0.15, 0.85, num_bands - 1)) * size
    for cut in cuts:
        boundary = np.full_like(x, cut)
        for scale in (1, 3):  # a slow and a faster wave
            amplitude = rng.uniform(0, 0.05) * size / scale
            wavelength = rng.uniform(0.3, 1.0) * size / scale
            boundary += amplitude * np.sin(2 * np.pi * x / wavelength +
                                           rng.uniform(0, 2 * np.pi))
        band += yy >= boundary[None, :]
    return np.asarray(labels, dtype=np.uint8)[band]


def _render_image(rng, size):
    """Draw one image; returns it (uint8 RGB) and its label map (uint8)."""
    xx, yy = _demo_data.pixel_grid(size)
    label = _band_labels(rng, xx, yy)
    for _ in range(rng.integers(0, 4)):
        label[_blob(rng, size)] = rng.choice(GROUND)
    clutter = [_clutter(rng, xx, yy) for _ in range(rng.integers(0, 5))]
    for mask, _ in clutter:
        label[mask] = 0

    image = np.zeros((size, size, 3), dtype=np.float32)
    for cls, texture in TEXTURES.items():
        region = label == cls
        if region.any():
            image[region] = texture(rng, xx, yy)[region]
    for mask, fill in clutter:
        image[mask] = fill[mask]
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    return image, label


def _pixel_fractions(counts):
    total = max(int(counts.sum()), 1)
    names = ('other', ) + CLASSES
    return {name: round(int(n) / total, 4) for name, n in zip(names, counts)}


def _generate_split(out_dir, split, split_index, num_images, seed, size):
    """Write one split's images and labels; returns its counts."""
    image_dir = osp.join(out_dir, 'images', split)
    label_dir = osp.join(out_dir, 'annotations', split)
    os.makedirs(image_dir)
    os.makedirs(label_dir)
    counts = np.zeros(len(CLASSES) + 1, dtype=np.int64)
    for index in range(1, num_images + 1):
        # one stream per image: a split does not change with another's size
        rng = np.random.default_rng([seed, split_index, index])
        image, label = _render_image(rng, size)
        name = f'demo_{index:06d}'
        Image.fromarray(image).save(
            osp.join(image_dir, f'{name}.jpg'), quality=95)
        Image.fromarray(label).save(osp.join(label_dir, f'{name}.png'))
        counts += np.bincount(label.ravel(), minlength=len(counts))
    return dict(images=num_images, pixel_fractions=_pixel_fractions(counts))


def _has_outputs(out_dir):
    return all(
        osp.isdir(osp.join(out_dir, kind, split))
        for kind in ('images', 'annotations') for split in SPLITS)


def generate(out_dir,
             seed=0,
             num_train=120,
             num_val=30,
             size=256,
             force=False):
    """Generate the dataset under ``out_dir`` unless it is already there.

    Args:
        out_dir (str): Output folder; only its ``images`` and
            ``annotations`` subfolders and ``meta.json`` are written (and
            replaced when regenerating).
        seed (int): Seed of all randomness. Defaults to 0.
        num_train (int): Number of training images. Defaults to 120.
        num_val (int): Number of validation images. Defaults to 30.
        size (int): Width and height of the images. Defaults to 256.
        force (bool): Regenerate even if ``out_dir`` already holds a dataset
            made with the same settings. Defaults to False.

    Returns:
        dict: ``generated`` (False when an existing dataset was kept) and,
        for ``'training'`` and ``'validation'``, the number of ``images``
        and the ``pixel_fractions`` of 'other' and of each class.
    """
    return _demo_data.generate_dataset(
        out_dir, seed, num_train, num_val, size, force,
        format_version=FORMAT_VERSION,
        min_size=32,
        splits=SPLITS,
        folders=('images', 'annotations'),
        has_outputs=_has_outputs,
        generate_split=_generate_split)


def check(out_dir):
    """Validate every image/label pair and print the pixel fractions.

    Raises:
        AssertionError: If a pair is missing or a label map is malformed.

    Returns:
        dict: The same per-split summary as :func:`generate`.
    """
    summary = {}
    for split in SPLITS:
        image_dir = osp.join(out_dir, 'images', split)
        label_dir = osp.join(out_dir, 'annotations', split)
        images = sorted(f[:-4] for f in os.listdir(image_dir)
                        if f.endswith('.jpg'))
        labels = sorted(f[:-4] for f in os.listdir(label_dir)
                        if f.endswith('.png'))
        assert images == labels, f'{split}: images and labels do not pair up'
        counts = np.zeros(len(CLASSES) + 1, dtype=np.int64)
        for name in images:
            with Image.open(osp.join(image_dir, f'{name}.jpg')) as image:
                image_size = image.size
            with Image.open(osp.join(label_dir, f'{name}.png')) as label:
                assert label.mode == 'L', f'{name}.png: mode {label.mode}'
                assert label.size == image_size, f'{name}.png: wrong size'
                label = np.asarray(label)
            assert label.max() <= len(CLASSES), f'{name}.png: bad label'
            counts += np.bincount(label.ravel(), minlength=len(counts))
        summary[split] = dict(
            images=len(images), pixel_fractions=_pixel_fractions(counts))

    names = ('other', ) + CLASSES
    print(f'{"split":<11}{"images":>7}' + ''.join(f'{n:>8}' for n in names))
    for split, info in summary.items():
        fractions = info['pixel_fractions']
        print(f'{split:<11}{info["images"]:>7}' +
              ''.join(f'{fractions[n]:>8.3f}' for n in names))
    return summary


def parse_args():
    return _demo_data.parse_args(
        description='Generate a tiny synthetic semantic segmentation dataset '
        'in the layout of ADE20K.',
        default_out='data/demo_ade',
        check_help='only validate an existing dataset and print its '
        'statistics')


def main():
    _demo_data.main(parse_args(), generate, check)


if __name__ == '__main__':
    main()
