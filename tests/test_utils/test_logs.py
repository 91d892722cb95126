# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""mmrepvit.utils.logs and its front ends: training logs of both formats,
their summaries and curves (tools/analysis_tools/analyze_logs.py, the
demo)."""
import json
import os
import runpy
import sys

import pytest

from helpers import REPO
from mmrepvit.utils import logs


def write_lines(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return path


def mmengine_det_log(work):
    """Two epochs of 20 iterations, logged every 10, validated per epoch."""
    records = []
    for it, loss in zip((10, 20, 30, 40), (4.0, 3.0, 2.0, 1.0)):
        records.append(dict(lr=0.001 * it, data_time=0.01, loss=loss,
                            loss_cls=loss / 2, loss_bbox=loss / 4,
                            time=0.1 * it, epoch=1 + (it > 20), iter=it,
                            step=it))
        if it in (20, 40):
            records.append({'coco/bbox_mAP': {20: 0.1, 40: 0.2}[it],
                            'coco/segm_mAP': {20: 0.25, 40: 0.2}[it],
                            'data_time': 0.01, 'time': 0.5,
                            'step': it // 20})
    return write_lines(work / '20240102_000000' / 'vis_data' /
                       'scalars.json', records)


def test_mmengine_epoch_based_log(tmp_path):
    work = tmp_path / 'work'
    # An older run in the same work dir is not the one read.
    write_lines(work / '20240101_000000' / 'vis_data' / 'scalars.json',
                [dict(lr=1, loss=9.0, iter=1, step=1)])
    mmengine_det_log(work)
    # A half-written line of a running job is skipped.
    with open(work / '20240102_000000' / 'vis_data' / 'scalars.json',
              'a') as f:
        f.write('{"lr": 0.1, "lo')
    log = logs.load_log(str(work))
    assert log.format == 'mmengine' and log.by_epoch
    assert log.name == 'work/20240102_000000'
    assert log.series('loss') == ([10, 20, 30, 40], [4.0, 3.0, 2.0, 1.0])
    assert log.series('loss', 'epoch') == ([0.5, 1.0, 1.5, 2.0],
                                           [4.0, 3.0, 2.0, 1.0])
    assert log.series('coco/bbox_mAP') == ([20, 40], [0.1, 0.2])
    assert log.series('coco/segm_mAP', 'epoch') == ([1, 2], [0.25, 0.2])
    s = logs.summarize(log)
    assert s['iterations'] == 40 and s['epochs'] == 2
    assert s['metrics']['coco/bbox_mAP'] == dict(final=0.2, best=0.2,
                                                 best_at='epoch 2')
    assert s['metrics']['coco/segm_mAP'] == dict(final=0.2, best=0.25,
                                                 best_at='epoch 1')
    assert s['time'] == pytest.approx(2.5)   # median of 1, 2, 3, 4 s
    assert s['peak_memory_mb'] is None and s['final_loss'] == 1.0
    text = logs.format_summary(s)
    assert 'coco/segm_mAP: final 0.2, best 0.25 (epoch 1)' in text
    assert 'median time per iteration 2.500 s' in text
    assert 'median data time 0.010 s' in text and 'final loss 1.0000' in text
    assert 'peak memory' not in text


def test_mmengine_iteration_based_log(tmp_path):
    path = write_lines(tmp_path / 'scalars.json', [
        dict(lr=0.01, loss=2.0, memory=900, time=0.2, iter=1, step=1),
        dict(lr=0.009, loss=1.0, memory=1000, time=0.4, iter=2, step=2),
        dict(aAcc=80.0, mIoU=40.0, mAcc=50.0, time=0.1, step=2)])
    log = logs.load_log(str(path))
    assert not log.by_epoch
    assert log.series('mIoU') == ([2], [40.0])
    assert log.series('mIoU', 'epoch') == ([], [])
    s = logs.summarize(log)
    assert s['peak_memory_mb'] == 1000 and s['epochs'] is None
    assert s['metrics']['mIoU']['best_at'] == 'iter 2'


def test_mmcv1_detection_log(tmp_path):
    """MMDetection 2.x: 'iter' restarts every epoch; metrics without the
    'coco/' prefix."""
    env = {'env_info': 'sys.platform: linux', 'config': '...', 'seed': 0}
    records = [env]
    for epoch in (1, 2):
        for it in (50, 100):
            records.append(dict(mode='train', epoch=epoch, iter=it, lr=2e-4,
                                memory=5000 + 100 * epoch, data_time=0.05,
                                loss_rpn_cls=0.1, loss=2.0 / epoch / it,
                                time=0.25))
        records.append(dict(mode='val', epoch=epoch, iter=100, lr=2e-4,
                            bbox_mAP=0.3 + 0.1 * epoch, bbox_mAP_50=0.5,
                            segm_mAP=0.3))
    log = logs.load_log(str(write_lines(tmp_path / 'x.log.json', records)),
                        name='paper')
    assert log.format == 'mmcv1' and log.by_epoch and log.name == 'paper'
    assert log.series('loss')[0] == [50, 100, 150, 200]
    assert log.series('loss', 'epoch')[0] == [0.5, 1.0, 1.5, 2.0]
    assert log.series('coco/bbox_mAP') == ([100, 200], [0.4, 0.5])
    assert log.series('coco/segm_mAP', 'epoch') == ([1, 2], [0.3, 0.3])
    s = logs.summarize(log)
    assert s['peak_memory_mb'] == 5200 and s['time'] == 0.25
    assert s['metrics']['coco/bbox_mAP']['best_at'] == 'epoch 2'


def test_mmcv1_segmentation_log(tmp_path):
    """MMSegmentation 0.x: global 'iter'; mIoU etc. as fractions."""
    records = [{'env_info': '...'},
               dict(mode='train', epoch=1, iter=50, lr=2e-4, loss=2.0,
                    time=0.14),
               dict(mode='train', epoch=1, iter=100, lr=1e-4, loss=1.0,
                    time=0.15),
               dict(mode='val', epoch=1, iter=2000, lr=1e-4, aAcc=0.75,
                    mIoU=0.4061, mAcc=0.5, **{'IoU.wall': 0.7}),
               dict(mode='train', epoch=2, iter=150, lr=1e-5, loss=0.5,
                    time=0.16)]
    log = logs.load_log(str(write_lines(tmp_path / 's.log.json', records)))
    assert not log.by_epoch
    assert log.series('loss') == ([50, 100, 150], [2.0, 1.0, 0.5])
    xs, ys = log.series('mIoU')
    assert xs == [100] and ys == [pytest.approx(40.61)]
    assert log.series('IoU.wall')[1] == [pytest.approx(70.0)]


def test_plot_overlays_runs_into_a_png(tmp_path, monkeypatch):
    """By default: the total loss and its terms in one panel (the total
    first), lr, and the usual metrics logged, each in its own panel."""
    ours = logs.load_log(str(mmengine_det_log(tmp_path / 'a')), 'ours')
    theirs = logs.load_log(str(write_lines(tmp_path / 'p.log.json', [
        dict(mode='train', epoch=1, iter=10, lr=1e-3, loss=3.0, time=0.2),
        dict(mode='train', epoch=1, iter=20, lr=1e-3, loss=2.5, time=0.2),
        dict(mode='val', epoch=1, iter=20, lr=1e-3, bbox_mAP=0.35),
        dict(mode='train', epoch=2, iter=10, lr=1e-3, loss=2.0, time=0.2)])))
    from matplotlib.figure import Figure
    figures = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, 'savefig', lambda fig, *args, **kwargs: (
        figures.append(fig), savefig(fig, *args, **kwargs)))
    png = logs.plot_logs([ours, theirs], str(tmp_path / 'curves.png'),
                         x='epoch')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == [
        'loss', 'lr', 'coco/bbox_mAP', 'coco/segm_mAP']
    assert axes[0].get_legend_handles_labels()[1] == [
        'ours: loss', 'ours: loss_cls', 'ours: loss_bbox', 'p: loss']
    assert axes[2].get_legend_handles_labels()[1] == ['ours', 'p']
    with pytest.raises(ValueError, match='Nothing to plot'):
        logs.plot_logs([logs.TrainingLog('empty', '', 'mmengine', False)],
                       str(tmp_path / 'none.png'))


def test_analyze_logs_tool(tmp_path, monkeypatch, capsys):
    log = mmengine_det_log(tmp_path / 'work')
    out = tmp_path / 'curves.png'

    def run(*args):
        monkeypatch.setattr(sys, 'argv', ['analyze_logs.py', *map(str, args)])
        runpy.run_path(str(REPO / 'tools/analysis_tools/analyze_logs.py'),
                       run_name='__main__')
        return capsys.readouterr().out

    text = run('plot_curve', tmp_path / 'work', log, '--legend', 'a', 'b',
               '--keys', 'loss', 'coco/bbox_mAP', 'nonsense', '--out', out)
    assert 'a (mmengine log): 40 iterations, 2 epochs' in text
    assert 'not in any log (against iter): nonsense' in text
    assert out.read_bytes()[:4] == b'\x89PNG'
    text = run('summary', log)
    assert 'coco/bbox_mAP: final 0.2, best 0.2 (epoch 2)' in text
    # a metric asked for and not logged is named, not silently dropped
    text = run('summary', log, '--keys', 'coco/bbox_mAP', 'nonsense')
    assert 'coco/bbox_mAP: final 0.2' in text
    assert text.splitlines()[-1] == 'not in any log: nonsense'


def test_what_is_no_log_or_not_logged_is_an_error(tmp_path, monkeypatch,
                                                 capsys):
    # The text log beside the json one, or any other file: no record.
    (tmp_path / 'train.log').write_text('2026/12/06 12:00:00 - mmengine - '
                                        'INFO - Epoch(train) [1][10/20]\n')
    with pytest.raises(ValueError, match=r"train.log is no training log: "
                       r"it holds no JSON record per line"):
        logs.load_log(str(tmp_path / 'train.log'))
    # Against epochs, an iteration-based run has nothing to plot.
    run = logs.load_log(str(write_lines(tmp_path / 'it.json', [
        dict(lr=0.01, loss=1.0, iter=10, step=10)])))
    with pytest.raises(ValueError, match=r'Nothing to plot against epoch: '
                       r'none of loss, lr is logged per epoch \(an '
                       r'iteration-based run: use --x iter\)'):
        logs.plot_logs([run], str(tmp_path / 'x.png'), x='epoch')
    assert not (tmp_path / 'x.png').exists()
    # The tool: usage errors (exit 2), not a summary of 0 iterations.
    for args in (['summary', tmp_path / 'train.log'],
                 ['plot_curve', tmp_path / 'it.json', '--x', 'epoch',
                  '--out', tmp_path / 'x.png']):
        monkeypatch.setattr(sys, 'argv', ['analyze_logs.py', *map(str, args)])
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(REPO / 'tools/analysis_tools/analyze_logs.py'),
                           run_name='__main__')
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'is no training log' in err and 'use --x iter' in err


def test_demo_writes_the_training_curves(tmp_path):
    mmengine_det_log(tmp_path)
    demo = runpy.run_path(str(REPO / 'tools' / 'demo.py'))
    png, summary = demo['plot_training_curves'](str(tmp_path))
    assert png == os.path.join(str(tmp_path), 'training_curves.png')
    assert os.path.getsize(png) > 0 and '40 iterations' in summary
