# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The demo dataset generators: deterministic, written once per settings,
annotations that agree with the images they describe."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from helpers import REPO

GENERATORS = REPO / 'tools' / 'dataset_converters'


def generate(script, out, *extra):
    """Run a generator as a user does; returns its console output."""
    proc = subprocess.run(
        [sys.executable, str(GENERATORS / script), '--out', str(out),
         '--num-train', '3', '--num-val', '2', '--size', '96', *extra],
        capture_output=True, text=True, check=True)
    return proc.stdout


def tree(root):
    """Every file under ``root``, relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('script', ['make_demo_coco.py', 'make_demo_ade.py'])
def test_same_settings_same_bytes_and_written_once(script, tmp_path):
    generate(script, tmp_path / 'a')
    generate(script, tmp_path / 'b')
    first = tree(tmp_path / 'a')
    assert len(first) > 5 and first == tree(tmp_path / 'b')

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / 'a').rglob('*')}
    assert 'already generated' in generate(script, tmp_path / 'a')
    assert {p: p.stat().st_mtime_ns
            for p in (tmp_path / 'a').rglob('*')} == mtimes

    generate(script, tmp_path / 'a', '--seed', '1')  # new settings: redone
    assert tree(tmp_path / 'a') != first
    assert json.loads((tmp_path / 'a' / 'meta.json').read_text())['seed'] == 1


def test_interrupted_run_is_redone(tmp_path, monkeypatch):
    """A run stopped half-way leaves incomplete.json and no meta.json (it is
    written last): the next run redoes the folder."""
    generate('make_demo_ade.py', tmp_path / 'expected')
    monkeypatch.syspath_prepend(str(GENERATORS))
    import make_demo_ade
    drawn, render = [], make_demo_ade.render

    def render_then_stop(rng, size):
        if len(drawn) == 2:
            raise KeyboardInterrupt
        drawn.append(size)
        return render(rng, size)

    monkeypatch.setattr(make_demo_ade, 'render', render_then_stop)
    out = tmp_path / 'ade'
    with pytest.raises(KeyboardInterrupt):
        make_demo_ade.generate(out, num_train=3, num_val=2, size=96)
    assert (out / 'incomplete.json').is_file()
    assert not (out / 'meta.json').exists()
    assert len(list(out.rglob('*.jpg'))) == 2
    assert 'already generated' not in generate('make_demo_ade.py', out)
    assert tree(out) == tree(tmp_path / 'expected')


@pytest.mark.parametrize('script,subdir', [('make_demo_coco.py', 'train'),
                                           ('make_demo_ade.py', 'images')])
def test_refuses_a_folder_it_did_not_write(script, subdir, tmp_path):
    """A non-empty --out without the generator's meta.json (a real dataset,
    say) is left alone unless --force: writing deletes the generator's
    folders in it."""
    real = tmp_path / 'real'
    (real / subdir).mkdir(parents=True)
    (real / subdir / 'photo.jpg').write_bytes(b'precious')
    proc = subprocess.run(
        [sys.executable, str(GENERATORS / script), '--out', str(real),
         '--num-train', '3', '--num-val', '2', '--size', '96'],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'usage:' in proc.stderr and 'Traceback' not in proc.stderr
    assert f'{real} is not empty and holds no meta.json' in proc.stderr
    assert 'Pick an empty or new folder for --out, or pass --force' in \
        proc.stderr
    assert tree(real) == {f'{subdir}/photo.jpg': b'precious'}

    # A meta.json that is not the generator's does not make it one.
    (real / 'meta.json').write_text('{"dataset": "mine"}')
    proc = subprocess.run(
        [sys.executable, str(GENERATORS / script), '--out', str(real)],
        capture_output=True, text=True)
    assert proc.returncode == 2 and 'pass --force' in proc.stderr
    assert (real / subdir / 'photo.jpg').read_bytes() == b'precious'

    generate(script, real, '--force')    # asked for: written there
    assert not (real / subdir / 'photo.jpg').exists()
    assert json.loads((real / 'meta.json').read_text())['num_train'] == 3


def test_writes_into_an_empty_folder(tmp_path):
    """An existing empty folder is as good as a new one."""
    generate('make_demo_ade.py', tmp_path)
    assert (tmp_path / 'meta.json').is_file()
    assert not (tmp_path / 'incomplete.json').exists()


def test_coco_annotations_match_the_images(tmp_path):
    generate('make_demo_coco.py', tmp_path)
    coco = json.loads(
        (tmp_path / 'annotations/instances_train.json').read_text())
    assert [c['name'] for c in coco['categories']] == [
        'circle', 'triangle', 'square', 'star']
    assert len(coco['images']) == 3
    for image in coco['images']:
        pixels = cv2.imread(str(tmp_path / 'train' / image['file_name']))
        assert pixels.shape == (96, 96, 3)
        objects = [a for a in coco['annotations']
                   if a['image_id'] == image['id']]
        assert 1 <= len(objects) <= 5
        for obj in objects:
            rle = dict(obj['segmentation'],
                       counts=obj['segmentation']['counts'].encode())
            mask = mask_utils.decode(rle).astype(bool)
            assert mask.shape == (96, 96)
            assert mask.sum() == obj['area'] > 0
            ys, xs = np.nonzero(mask)
            np.testing.assert_allclose(
                obj['bbox'], [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                              ys.max() - ys.min() + 1])
            # a solid shape: its pixels differ from the image around it
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5))) > mask
            inside = pixels[mask].astype(float).mean(0)
            outside = pixels[ring].astype(float).mean(0)
            assert np.linalg.norm(inside - outside) > 30
    ids = [a['id'] for a in coco['annotations']]
    assert len(set(ids)) == len(ids)


def test_ade_labels_are_the_six_classes(tmp_path):
    generate('make_demo_ade.py', tmp_path)
    for split, count in [('training', 3), ('validation', 2)]:
        labels = sorted((tmp_path / 'annotations' / split).glob('*.png'))
        images = sorted((tmp_path / 'images' / split).glob('*.jpg'))
        assert [p.stem for p in labels] == [p.stem for p in images]
        assert len(labels) == count
        for path in labels:
            label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert label.shape == (96, 96) and label.dtype == np.uint8
            assert set(np.unique(label)) <= set(range(6))


@pytest.mark.parametrize('script', ['make_demo_coco.py', 'make_demo_ade.py'])
def test_counts_and_sizes_out_of_range_are_usage_errors(script, tmp_path):
    # an empty split, or images too small for the shapes, are refused
    proc = subprocess.run(
        [sys.executable, str(GENERATORS / script), '--out',
         str(tmp_path / 'x'), '--num-val', '0', '--size', '4'],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert ("argument --num-val: expected an integer >= 1, got '0'"
            in proc.stderr)
    proc = subprocess.run(
        [sys.executable, str(GENERATORS / script), '--out',
         str(tmp_path / 'x'), '--size', '4'], capture_output=True, text=True)
    assert "argument --size: expected an integer >= 32, got '4'" in \
        proc.stderr
    assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('script', ['make_demo_coco.py', 'make_demo_ade.py'])
def test_generators_import_neither_mmrepvit_nor_torch(script):
    """They need numpy and OpenCV (and pycocotools) only: importing
    mmrepvit made a small run take 3 s instead of 0.3 s."""
    check = (f'import sys; sys.path.insert(0, {str(GENERATORS)!r}); '
             f'import {script[:-3]}; print([m for m in '
             f'("mmrepvit", "torch", "mmengine") if m in sys.modules])')
    proc = subprocess.run([sys.executable, '-c', check], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == '[]'
