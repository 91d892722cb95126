# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Generate a small synthetic COCO instance segmentation dataset of shapes.

Each image shows 1-5 solid shapes ('circle', 'triangle', 'square', 'star';
category ids 1-4) of random size, rotation and colour on a smooth background,
each in a colour far from what it covers. Later shapes are drawn on top (never
hiding over 30% of an earlier one); each annotation is the COCO RLE of the
pixels where its shape is visible. Writes OUT/{train,val}/demo_000001.jpg...,
OUT/annotations/instances_{train,val}.json and OUT/meta.json (the settings),
byte-identical for the same settings. A second run with the same settings
does nothing, unless ``--force``. A non-empty OUT that holds no meta.json of
an earlier run is refused, unless ``--force``. Usage::

    python tools/dataset_converters/make_demo_coco.py --out data/demo_coco \\
        [--seed 0] [--num-train 240] [--num-val 30] [--size 256] [--force]
"""
import json

import cv2
import numpy as np
from demo_dataset import main, write_once
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'triangle', 'square', 'star')
VERSION = 2  # bump when the drawing changes, so that old outputs are redone
MIN_VISIBLE = 0.7  # of every shape's area, whatever is drawn on top of it
MIN_CONTRAST = 150  # wanted RGB distance between a shape and what it covers


def shape_mask(rng, name, size):
    """Mask of a shape of random size, rotation and place inside the image."""
    if name == 'star':
        radii = np.tile([1, rng.uniform(0.4, 0.55)], 5)
    else:
        radii = np.ones({'circle': 64, 'triangle': 3, 'square': 4}[name])
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(
        0, 2 * np.pi, len(radii), endpoint=False)
    diameter = size * np.exp(rng.uniform(np.log(0.08), np.log(0.47)))
    points = diameter / 2 * radii[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], axis=1)
    points += rng.uniform(-points.min(0), size - 1 - points.max(0))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def background(rng, size):
    """A random colour under a soft gradient and soft blotches, float RGB."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle))[..., None]
    blotches = cv2.resize(rng.uniform(-1, 1, (4, 4, 3)).astype(np.float32),
                          (size, size), interpolation=cv2.INTER_CUBIC)
    return (rng.uniform(40, 215, 3) + ramp * rng.uniform(-60, 60, 3) +
            20 * blotches + rng.normal(0, 3, (size, size, 3)))


def contrasting_colour(rng, image, owner, mask):
    """A random colour far from the mean colour of the background and of
    each earlier shape under ``mask``."""
    covered = np.array([image[mask & (owner == index)].mean(axis=0)
                        for index in np.unique(owner[mask])])
    candidates = rng.uniform(0, 255, (16, 3))
    distance = np.linalg.norm(candidates[:, None] - covered, axis=2).min(1)
    # the first one at least MIN_CONTRAST away, else the farthest
    return candidates[np.minimum(distance, MIN_CONTRAST).argmax()]


def render(rng, size):
    """Draw one image; returns it (uint8 RGB) and its COCO annotations."""
    image = background(rng, size)
    owner = np.zeros((size, size), np.int64)  # 0: background, k: k-th shape
    labels, full_areas = [], []
    for _ in range(rng.integers(1, 6)):
        label = int(rng.integers(len(CLASSES)))
        for _ in range(50):  # tries to find a place for it
            mask = shape_mask(rng, CLASSES[label], size)
            visible = np.bincount(owner.ravel(), minlength=len(labels) + 1)
            hidden = np.bincount(owner[mask], minlength=len(labels) + 1)
            if np.all(visible[1:] - hidden[1:] >=
                      MIN_VISIBLE * np.array(full_areas)):
                break
        else:  # no room left for it
            continue
        colour = contrasting_colour(rng, image, owner, mask)
        image[mask] = colour + rng.normal(0, 4, (mask.sum(), 3))
        owner[mask] = len(labels) + 1
        labels.append(label)
        full_areas.append(mask.sum())

    annotations = []
    for index, label in enumerate(labels, start=1):
        rle = mask_utils.encode(np.asfortranarray(owner == index, np.uint8))
        annotations.append(dict(
            category_id=label + 1, iscrowd=0, area=float(mask_utils.area(rle)),
            bbox=mask_utils.toBbox(rle).tolist(),
            segmentation=dict(rle, counts=rle['counts'].decode('ascii'))))
    return np.clip(image, 0, 255).round().astype(np.uint8), annotations


def generate(out_dir, num_train=240, num_val=30, size=256, seed=0,
             force=False):
    """Write the dataset to ``out_dir``; returns False (and writes nothing)
    if it already holds one made with the same settings, unless ``force``."""
    settings = dict(version=VERSION, num_train=num_train, num_val=num_val,
                    size=size, seed=seed)
    categories = [dict(id=i, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES, start=1)]

    def write(out):
        (out / 'annotations').mkdir(parents=True, exist_ok=True)
        for split_index, (split, num_images) in enumerate(
                [('train', num_train), ('val', num_val)]):
            (out / split).mkdir()
            images, annotations = [], []
            for image_id in range(1, num_images + 1):
                # a random stream per image: a split does not depend on the
                # other
                rng = np.random.default_rng([seed, split_index, image_id])
                image, objects = render(rng, size)
                file_name = f'demo_{image_id:06d}.jpg'
                cv2.imwrite(str(out / split / file_name), image[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                images.append(dict(id=image_id, file_name=file_name,
                                   width=size, height=size))
                annotations += [dict(id=len(annotations) + i,
                                     image_id=image_id, **obj)
                                for i, obj in enumerate(objects, 1)]
            coco = dict(images=images, annotations=annotations,
                        categories=categories)
            (out / f'annotations/instances_{split}.json').write_text(
                json.dumps(coco))
            print(f'{split}: {len(images)} images, {len(annotations)} shapes')

    return write_once(out_dir, settings, ('train', 'val', 'annotations'),
                      write, force)


if __name__ == '__main__':
    main(generate, __doc__, default_out='data/demo_coco')
