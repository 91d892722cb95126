# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Generate a tiny synthetic COCO instance segmentation dataset.

The dataset exists so that Mask R-CNN with a RepViT backbone can be trained
and evaluated end to end on a CPU in minutes. Every image holds 1-5 shapes
('circle', 'triangle', 'square', 'star'; category ids 1-4) of varied size,
colour, texture and rotation on a textured background. Shapes may overlap a
little, later ones on top; each annotation outlines the *visible* part of its
shape, and placements that would hide much of a shape, split it or punch a
hole in it are rejected. The output is byte-identical for a given seed::

    OUT/train/demo_000001.jpg ...
    OUT/val/demo_000001.jpg ...
    OUT/annotations/instances_train.json
    OUT/annotations/instances_val.json
    OUT/meta.json                          # the settings it was made with

Usage::

    python tools/make_demo_coco.py --out data/demo_coco --seed 0 \\
        --num-train 120 --num-val 30 --size 256 [--force]
    python tools/make_demo_coco.py --out data/demo_coco --check

A second run with the same settings only prints "already generated". Needs
numpy and opencv-python; ``--check`` also needs pycocotools.
"""
import contextlib
import io
import json
import os
import os.path as osp

import cv2
import numpy as np

import _demo_data

CLASSES = ('circle', 'triangle', 'square', 'star')
SPLITS = ('train', 'val')
# Bump when the drawing changes, so that old outputs get regenerated.
FORMAT_VERSION = 1

MAX_OBJECTS = 5
DIAMETER_RANGE = (20, 120)  # object size in pixels on a 256 x 256 image
MAX_BBOX_IOU = 0.3  # between a new shape's box and every earlier one
MIN_VISIBLE = 0.75  # fraction of every shape that must stay visible
PLACEMENT_TRIES = 30
POLYGON_UPSCALE = 4  # outlines are traced at this sub-pixel resolution


def _mask_bbox(mask):
    """Inclusive pixel bounds ``(x0, y0, x1, y1)`` of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


def _box_iou(a, b):
    """IoU of two ``(x0, y0, x1, y1)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.
    inter = w * h
    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) -
             inter)
    return inter / union


def _mask_to_polygon(mask):
    """Outline ``mask`` as one COCO polygon ``[x1, y1, x2, y2, ...]``.

    Returns None unless the mask is a single region without holes: COCO
    polygons cannot express holes. The outline is traced on a
    ``POLYGON_UPSCALE`` times finer grid, so it hugs the pixel edges instead
    of running through the centres of the border pixels.
    """
    if not mask.any():
        return None
    x0, y0, x1, y1 = _mask_bbox(mask)
    crop = np.pad(mask[y0:y1 + 1, x0:x1 + 1], 1).astype(np.uint8)
    fine = crop.repeat(POLYGON_UPSCALE, 0).repeat(POLYGON_UPSCALE, 1)
    contours, _ = cv2.findContours(fine, cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) != 1:  # several regions, or a hole
        return None
    outline = cv2.approxPolyDP(
        contours[0], epsilon=POLYGON_UPSCALE / 2, closed=True).reshape(-1, 2)
    if len(outline) < 3:
        return None
    outline = (outline + 0.5) / POLYGON_UPSCALE + (x0 - 1, y0 - 1)
    return [round(float(v), 2) for v in outline.ravel()]


def _shape_polygon(rng, label, diameter):
    """Vertices (N, 2) of a randomly rotated shape centred on the origin."""
    name = CLASSES[label]
    radius = diameter / 2
    if name == 'star':
        inner = radius * rng.uniform(0.38, 0.55)
        radii = np.tile([radius, inner], 5)
    else:
        num_vertices = {'circle': 32, 'triangle': 3, 'square': 4}[name]
        radii = np.full(num_vertices, radius)
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(
        0, 2 * np.pi, len(radii), endpoint=False)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _background(rng, xx, yy):
    """A random gradient, cloudy noise or stripes background, float RGB."""
    size = xx.shape[0]
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, (2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(direction) + yy * np.sin(direction)
    if kind == 0:  # linear gradient
        t = (proj - proj.min()) / (proj.max() - proj.min())
        image = c0 + (c1 - c0) * t[..., None]
    elif kind == 1:  # smooth colour noise
        cells = int(rng.integers(3, 9))
        coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        image = cv2.resize(coarse, (size, size),
                           interpolation=cv2.INTER_CUBIC)
    else:  # soft stripes
        period = rng.uniform(0.04, 0.16) * size
        t = 0.5 + 0.5 * np.sin(2 * np.pi * proj / period)
        image = c0 + (c1 - c0) * t[..., None]
    image = image + rng.normal(0, 4, image.shape)
    return image.astype(np.float32)


def _contrasting_color(rng, pixels, num_candidates=8):
    """Of a few random colours, the one farthest from ``pixels``' mean."""
    candidates = rng.uniform(0, 255, (num_candidates, 3))
    distances = np.linalg.norm(candidates - pixels.mean(axis=0), axis=1)
    return candidates[np.argmax(distances)]


def _fill(rng, color, xx, yy):
    """A solid, striped, checkered or noisy fill of ``color``, float RGB."""
    size = xx.shape[0]
    kind = rng.choice(['solid', 'stripes', 'checker', 'noise'],
                      p=[0.4, 0.2, 0.2, 0.2])
    # a second, clearly darker or lighter shade for the two-tone patterns
    shift = rng.uniform(60, 110) * (-1 if color.mean() > 128 else 1)
    shade = np.clip(color + shift, 0, 255)
    if kind == 'solid':
        return np.broadcast_to(color, xx.shape + (3, ))
    if kind == 'noise':
        noise = rng.normal(0, rng.uniform(15, 35), xx.shape + (1, ))
        return color + noise
    if kind == 'stripes':
        direction = rng.uniform(0, np.pi)
        period = rng.uniform(0.02, 0.05) * size
        proj = xx * np.cos(direction) + yy * np.sin(direction)
        pattern = (proj / period) % 1 < 0.5
    else:
        cell = rng.uniform(0.015, 0.04) * size
        pattern = (xx // cell + yy // cell) % 2 == 0
    return np.where(pattern[..., None], color, shade)


def _can_place(mask, box, instance_map, boxes, full_areas):
    """Whether a new shape may be drawn on top of the ones drawn so far."""
    if _mask_to_polygon(mask) is None:  # e.g. star tips broken off
        return False
    if any(_box_iou(box, other) > MAX_BBOX_IOU for other in boxes):
        return False
    for index in np.unique(instance_map[mask]):
        if index == 0:  # background
            continue
        visible = (instance_map == index) & ~mask
        if (visible.sum() < MIN_VISIBLE * full_areas[index - 1]
                or _mask_to_polygon(visible) is None):
            return False
    return True


def _render_image(rng, size):
    """Draw one image; returns it (uint8 RGB) and its instances."""
    xx, yy = _demo_data.pixel_grid(size)
    image = _background(rng, xx, yy)
    # 0 is background, i + 1 the i-th shape drawn: what each pixel shows
    instance_map = np.zeros((size, size), dtype=np.int32)
    labels, boxes, full_areas = [], [], []
    scale = size / 256
    log_min = np.log(max(8., DIAMETER_RANGE[0] * scale))
    log_max = np.log(min(DIAMETER_RANGE[1] * scale, size - 4.))

    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        label = int(rng.integers(len(CLASSES)))
        for _ in range(PLACEMENT_TRIES):
            diameter = np.exp(rng.uniform(log_min, log_max))
            polygon = _shape_polygon(rng, label, diameter)
            # a random position that keeps the shape 1 px inside the image
            polygon += rng.uniform(1 - polygon.min(0), size - 1 -
                                   polygon.max(0))
            box = (*polygon.min(0), *polygon.max(0))
            mask = _demo_data.rasterise(polygon, size)
            if _can_place(mask, box, instance_map, boxes, full_areas):
                break
        else:  # no room left for this shape
            continue
        color = _contrasting_color(rng, image[mask])
        image[mask] = _fill(rng, color, xx, yy)[mask]
        instance_map[mask] = len(labels) + 1
        labels.append(label)
        boxes.append(box)
        full_areas.append(int(mask.sum()))

    instances = []
    for index, label in enumerate(labels, start=1):
        visible = instance_map == index
        x0, y0, x1, y1 = _mask_bbox(visible)
        instances.append(
            dict(
                category_id=label + 1,
                segmentation=[_mask_to_polygon(visible)],
                area=float(visible.sum()),
                bbox=[float(x0), float(y0),
                      float(x1 - x0 + 1),
                      float(y1 - y0 + 1)],
                iscrowd=0))
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    return image, instances


def _empty_counts():
    return dict(images=0, instances=0, per_class={c: 0 for c in CLASSES})


def _generate_split(out_dir, split, split_index, num_images, seed, size):
    """Write one split's images and annotation file; returns its counts."""
    os.makedirs(osp.join(out_dir, split))
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    coco = dict(
        info=dict(description=f'mmrepvit synthetic shapes ({split})',
                  version=str(FORMAT_VERSION)),
        licenses=[],
        images=[],
        annotations=[],
        categories=[
            dict(id=i, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES, start=1)
        ])
    counts = _empty_counts()
    for image_id in range(1, num_images + 1):
        # one stream per image: a split does not change with another's size
        rng = np.random.default_rng([seed, split_index, image_id])
        image, instances = _render_image(rng, size)
        file_name = f'demo_{image_id:06d}.jpg'
        cv2.imwrite(
            osp.join(out_dir, split, file_name), image[..., ::-1],
            [cv2.IMWRITE_JPEG_QUALITY, 95])
        coco['images'].append(
            dict(id=image_id, file_name=file_name, width=size, height=size))
        for instance in instances:
            instance = dict(
                id=len(coco['annotations']) + 1, image_id=image_id,
                **instance)
            coco['annotations'].append(instance)
            counts['per_class'][CLASSES[instance['category_id'] - 1]] += 1
    counts['images'] = num_images
    counts['instances'] = len(coco['annotations'])
    with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'),
              'w') as f:
        json.dump(coco, f)
    return counts


def _has_outputs(out_dir):
    return all(
        osp.isfile(osp.join(out_dir, 'annotations', f'instances_{s}.json'))
        for s in SPLITS)


def generate(out_dir,
             seed=0,
             num_train=120,
             num_val=30,
             size=256,
             force=False):
    """Generate the dataset under ``out_dir`` unless it is already there.

    Args:
        out_dir (str): Output folder; only its ``train``, ``val`` and
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
        for ``'train'`` and ``'val'``, the numbers of ``images`` and
        ``instances`` and the instances ``per_class``.
    """
    return _demo_data.generate_dataset(
        out_dir, seed, num_train, num_val, size, force,
        format_version=FORMAT_VERSION,
        min_size=64,
        splits=SPLITS,
        folders=(*SPLITS, 'annotations'),
        has_outputs=_has_outputs,
        generate_split=_generate_split)


def check(out_dir):
    """Load both splits with pycocotools, validate them and print counts.

    Raises:
        AssertionError: If a file is missing or an annotation is malformed.

    Returns:
        dict: The same per-split counts as :func:`generate`.
    """
    from pycocotools.coco import COCO

    summary = {}
    for split in SPLITS:
        with contextlib.redirect_stdout(io.StringIO()):  # COCO's chatter
            coco = COCO(
                osp.join(out_dir, 'annotations', f'instances_{split}.json'))
        names = [c['name'] for c in coco.loadCats(coco.getCatIds())]
        assert tuple(names) == CLASSES, names
        counts = _empty_counts()
        for image_id in coco.getImgIds():
            info = coco.loadImgs(image_id)[0]
            path = osp.join(out_dir, split, info['file_name'])
            assert osp.isfile(path), f'missing image {path}'
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
                mask = coco.annToMask(ann)
                assert mask.shape == (info['height'], info['width'])
                assert mask.any() and ann['area'] > 0, ann['id']
                counts['per_class'][CLASSES[ann['category_id'] - 1]] += 1
            counts['images'] += 1
        counts['instances'] = len(coco.getAnnIds())
        summary[split] = counts

    print(f'{"split":<7}{"images":>7}{"objects":>8}' +
          ''.join(f'{name:>10}' for name in CLASSES))
    for split, counts in summary.items():
        print(f'{split:<7}{counts["images"]:>7}{counts["instances"]:>8}' +
              ''.join(f'{counts["per_class"][n]:>10}' for n in CLASSES))
    return summary


def parse_args():
    return _demo_data.parse_args(
        description='Generate a tiny synthetic COCO instance segmentation '
        'dataset of shapes.',
        default_out='data/demo_coco',
        check_help='only validate an existing dataset and print its counts')


def main():
    _demo_data.main(parse_args(), generate, check)


if __name__ == '__main__':
    main()
