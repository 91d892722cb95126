# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Generate a small synthetic semantic segmentation dataset in ADE20K's layout.

Each image is a "landscape" of 2-4 wavy horizontal bands and some blobs of five
textured classes ('sky', 'grass', 'water', 'brick', 'sand': labels 1-5), with
polygons of label 0 ("other", ignored through ``reduce_zero_label=True``) on
top. Writes OUT/images/{training,validation}/demo_000001.jpg..., label PNGs of
the same names in OUT/annotations/{training,validation}/ and OUT/meta.json
(the settings), byte-identical for the same settings; a second run with the
same settings does nothing, unless ``--force``. A non-empty OUT that holds no
meta.json of an earlier run is refused, unless ``--force``. Usage::

    python tools/dataset_converters/make_demo_ade.py --out data/demo_ade \\
        [--seed 0] [--num-train 120] [--num-val 30] [--size 256] [--force]
"""
import cv2
import numpy as np
from demo_dataset import main, write_once

CLASSES = ('sky', 'grass', 'water', 'brick', 'sand')
PALETTE = [[135, 206, 250], [34, 139, 34], [0, 70, 160], [178, 34, 34],
           [238, 214, 175]]
SKY, GRASS, WATER, BRICK, SAND = range(1, 6)
GROUND = (GRASS, WATER, BRICK, SAND)  # what bands below the top one show
BASE_COLOURS = [(40, 100, 210), (70, 145, 45), (30, 110, 140), (165, 65, 45),
                (215, 190, 135)]  # of the textures, before colour jitter
VERSION = 2  # bump when the drawing changes, so that old outputs are redone


def smooth_noise(rng, size, rows, cols):
    """(size, size, 1) noise in about [0, 1]: a rows x cols grid, enlarged."""
    grid = rng.random((rows, cols), dtype=np.float32)
    smooth = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return smooth[..., None]


def texture(rng, cls, xx, yy):
    """The whole image in class ``cls``'s texture, float RGB; ``xx`` and
    ``yy`` are the pixel coordinates, (size, size, 1)."""
    size, noise = len(xx), rng.normal(0, 1, xx.shape)
    base = (np.array(BASE_COLOURS[cls - 1]) * rng.uniform(0.8, 1.2) +
            rng.uniform(-15, 15, 3))
    if cls == SKY:  # paler towards the horizon, with some clouds
        sky = base + yy / size * (120, 105, 30) + 2 * noise
        clouds = np.clip(smooth_noise(rng, size, 4, 6) - 0.55, 0, 1)
        return sky + (245 - sky) * 1.5 * rng.random() * clouds
    if cls == GRASS:  # vertical blades, darker patches
        blades = smooth_noise(rng, size, size // 8, size // 2)
        patches = smooth_noise(rng, size, 5, 5)
        return base * (0.55 + 0.6 * blades + 0.3 * patches + 0.12 * noise)
    if cls == WATER:  # wobbly horizontal ripples
        wobble = 0.25 * np.sin(2 * np.pi * xx / (rng.uniform(0.2, 0.5) * size)
                               + rng.uniform(0, 2 * np.pi))
        period = rng.uniform(0.03, 0.07) * size
        ripples = 28 * np.sin(2 * np.pi * (yy / period + wobble))
        return base + ripples + 6 * noise
    if cls == BRICK:  # staggered bricks of varied shades, light mortar
        height = rng.uniform(0.04, 0.07) * size
        width, mortar = height * rng.uniform(2, 2.6), max(1, 0.15 * height)
        row = (yy // height).astype(int)
        x = xx + (row % 2) * width / 2  # odd rows shifted by half a brick
        col = (x // width).astype(int)
        shades = rng.uniform(0.8, 1.15, (row.max() + 1, col.max() + 1))
        joints = (yy % height < mortar) | (x % width < mortar)
        mortar_colour = rng.uniform(180, 210) + rng.uniform(-8, 8, 3)
        bricks = np.where(joints, mortar_colour, base * shades[row, col])
        return bricks + 6 * noise
    dunes = 20 * smooth_noise(rng, size, 4, 4) - 10  # sand: dunes, specks
    specks = rng.choice([-45., 0., 35.], p=[0.05, 0.9, 0.05], size=xx.shape)
    return base + dunes + specks + 5 * noise


def polygon_mask(rng, size, angles, radii, stretch):
    """Mask of a polygon given in polar coordinates, stretched along x and y
    by random factors in ``stretch`` and placed at random."""
    points = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    points = points * rng.uniform(*stretch, 2) + rng.uniform(0, size, 2)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def stuff_labels(rng, size, xx, yy):
    """Label map of 2-4 horizontal bands with wavy borders, top one usually
    sky, and 0-3 blobs of ground classes on top."""
    num_bands = int(rng.integers(2, 5))
    labels = [SKY if rng.random() < 0.75 else int(rng.choice(GROUND))]
    while len(labels) < num_bands:  # each band unlike the one above it
        labels.append(int(rng.choice([g for g in GROUND if g != labels[-1]])))
    band = np.zeros((size, size, 1), dtype=int)
    for border in np.sort(rng.uniform(0.15, 0.85, num_bands - 1)) * size:
        for k in (1, 3):  # a slow wave and a faster, smaller one
            wavelength = rng.uniform(0.3, 1) * size / k
            border = border + rng.uniform(0, 0.05) * size / k * np.sin(
                2 * np.pi * xx / wavelength + rng.uniform(0, 2 * np.pi))
        band += yy >= border
    label = np.array(labels, np.uint8)[band[..., 0]]
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    for _ in range(rng.integers(0, 4)):  # blobs: circles with smooth bumps
        radii = np.ones_like(angles)
        for k, phase in zip((2, 3, 4), rng.uniform(0, 2 * np.pi, 3)):
            radii += rng.uniform(0, 0.15) * np.cos(k * angles + phase)
        radii *= rng.uniform(0.08, 0.22) * size
        blob = polygon_mask(rng, size, angles, radii, (0.7, 1.4))
        label[blob] = rng.choice(GROUND)
    return label


def render(rng, size):
    """Draw one image; returns it (uint8 RGB) and its label map (uint8)."""
    yy, xx = (np.mgrid[:size, :size] + 0.5)[..., None]  # (size, size, 1)
    label = stuff_labels(rng, size, xx, yy)
    image = np.zeros((size, size, 3))
    for cls in range(1, len(CLASSES) + 1):
        region = label == cls
        if region.any():
            image[region] = texture(rng, cls, xx, yy)[region]
    for _ in range(rng.integers(0, 5)):  # "other": solid or striped polygons
        num_vertices = rng.choice([3, 4, 5, 6, 24])
        angles = np.sort(rng.uniform(0, 2 * np.pi, num_vertices))
        radii = np.full(num_vertices, rng.uniform(0.06, 0.2) * size)
        mask = polygon_mask(rng, size, angles, radii, (0.4, 1.6))
        period = rng.uniform(0.02, 0.06) * size
        stripes = ((xx * rng.uniform(-1, 1) + yy) / period % 1 < 0.5) & (
            rng.random() < 0.5)
        fill = np.where(stripes, *rng.uniform(0, 255, (2, 3)))
        image[mask] = fill[mask] + rng.normal(0, 8, (mask.sum(), 3))
        label[mask] = 0
    return np.clip(image, 0, 255).round().astype(np.uint8), label


def generate(out_dir, num_train=120, num_val=30, size=256, seed=0,
             force=False):
    """Write the dataset to ``out_dir``; returns False (and writes nothing)
    if it already holds one made with the same settings, unless ``force``."""
    settings = dict(version=VERSION, num_train=num_train, num_val=num_val,
                    size=size, seed=seed)

    def write(out):
        for split_index, (split, num_images) in enumerate(
                [('training', num_train), ('validation', num_val)]):
            (out / 'images' / split).mkdir(parents=True)
            (out / 'annotations' / split).mkdir(parents=True)
            for index in range(1, num_images + 1):
                # a random stream per image: a split does not depend on the
                # other
                image, label = render(
                    np.random.default_rng([seed, split_index, index]), size)
                name = f'{split}/demo_{index:06d}'
                cv2.imwrite(str(out / f'images/{name}.jpg'), image[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(str(out / f'annotations/{name}.png'), label)
            print(f'{split}: {num_images} images')

    return write_once(out_dir, settings, ('images', 'annotations'), write,
                      force)


if __name__ == '__main__':
    main(generate, __doc__, default_out='data/demo_ade')
