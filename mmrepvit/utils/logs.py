# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""MMEngine's ``scalars.json`` and MMCV 1.x's ``*.log.json`` training logs
(the latter in MMEngine's names and units): series, summaries, plots."""
import contextlib
import glob
import itertools
import json
import os.path as osp
import statistics
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

#: Summarised and plotted by default, where a log has them.
DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')
_NOT_METRICS = ('iter', 'epoch', 'step', 'time', 'data_time', 'lr', 'memory')
_PERCENT_IN_MMSEG0 = ('mIoU', 'mAcc', 'aAcc', 'IoU.', 'Acc.')


@dataclass
class TrainingLog:
    """One run's ``train`` and ``val`` records (dicts of scalars)."""
    name: str
    path: str
    format: str   # 'mmengine' or 'mmcv1'
    by_epoch: bool
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)

    def metric_keys(self) -> List[str]:
        """The validation metrics, in the order first logged."""
        return [k for k in dict.fromkeys(k for r in self.val for k in r)
                if k not in _NOT_METRICS]

    def series(self, key: str, x: str = 'iter') -> Tuple[list, list]:
        """x ('iter' or 'epoch') and the values of a key where logged."""
        records = self.val if key in self.metric_keys() else self.train
        points = [(r[x], r[key]) for r in records
                  if key in r and r.get(x) is not None]
        return [p[0] for p in points], [p[1] for p in points]


def load_log(path: str, name: Optional[str] = None) -> TrainingLog:
    """Read a log of either format.

    Args:
        path (str): A log file, or a directory holding one (the newest
            ``vis_data/scalars.json``, else the last ``*.log.json``).
        name (str, optional): The run's name. Defaults to ``None``: from
            the path.

    Returns:
        TrainingLog: The run.
    """
    if osp.isdir(path):   # the last: timestamp directories sort by time
        found = [sorted(glob.glob(osp.join(path, pattern), recursive=True))
                 for pattern in ('**/vis_data/scalars.json', '**/*.log.json')]
        path = next((paths[-1] for paths in found if paths), path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'No log file {path!r}, nor vis_data/'
                                f'scalars.json or *.log.json under it.')
    records = []
    with open(path) as f:
        for line in f:   # a blank line or one being written is no record
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    records = [r for r in records if isinstance(r, dict)]
    if not records:
        raise ValueError(f'{path} is no training log: it holds no JSON '
                         'record per line (give a vis_data/scalars.json, a '
                         '*.log.json or the work dir).')
    fmt = 'mmcv1' if any('mode' in r for r in records) else 'mmengine'
    by_epoch, train, val, ends = (_mmcv1 if fmt == 'mmcv1' else _mmengine)(
        records)
    starts = dict(zip(sorted(ends), [0] + [ends[e] for e in sorted(ends)]))
    for r in train:   # epoch-based: the epochs done, a fraction
        e = r.get('epoch')
        r['epoch'] = e - 1 + (r['iter'] - starts[e]) / max(
            ends[e] - starts[e], 1) if by_epoch else None
    parts = osp.normpath(osp.abspath(path)).split(osp.sep)
    default = '/'.join(parts[-4:-2]) if parts[-2:-1] == ['vis_data'] else \
        parts[-1].removesuffix('.json').removesuffix('.log')
    return TrainingLog(name or default, path, fmt, by_epoch, train, val)


def _scalars(record: dict) -> dict:
    return {k: v for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# Parsers return (by_epoch, train, val, ends): records with a global 'iter'
# and, epoch-based, an integer 'epoch'; ends: epoch -> its last iteration.
def _mmengine(records: List[dict]):
    by_iter, val = {}, []
    for values in map(_scalars, records):
        if 'iter' in values:
            values.pop('step', None)
            by_iter[values['iter']] = values    # a resumed run overwrites
        else:
            val.append(values)
    train = [by_iter[i] for i in sorted(by_iter)]
    by_epoch = any('epoch' in r for r in train)
    ends = {r['epoch']: r['iter'] for r in train} if by_epoch else {}
    for r in val:   # 'step': the epoch in epoch-based runs, else the iter
        step = r.pop('step', None)
        r['epoch'], r['iter'] = (step, ends.get(step)) if by_epoch else (
            None, step)
    return by_epoch, train, val, ends


def _mmcv1(records: List[dict]):
    raw = [r for r in records if r.get('mode') in ('train', 'val')]
    its = [r['iter'] for r in raw if r['mode'] == 'train']
    by_epoch = any(b < a for a, b in zip(its, its[1:]))   # 'iter' restarts
    lengths = {}   # an epoch's: its largest 'iter' (the validation line's)
    for r in raw if by_epoch else ():
        lengths[r['epoch']] = max(lengths.get(r['epoch'], 0), r['iter'])
    lengths = dict(sorted(lengths.items()))
    ends = dict(zip(lengths, itertools.accumulate(lengths.values())))
    train, val, last = [], [], 0
    for r, values in zip(raw, map(_scalars, raw)):
        e = r.get('epoch')
        if r['mode'] == 'train':   # epoch-based: after the epochs before
            values['iter'] += ends.get(e, 0) - lengths.get(e, 0)
            last = values['iter']
            train.append(values)
        else:
            val.append(dict(
                (f'coco/{k}' if k.startswith(('bbox_mAP', 'segm_mAP')) else k,
                 v * 100 if k.startswith(_PERCENT_IN_MMSEG0) else v)
                for k, v in values.items() if k not in _NOT_METRICS))
            val[-1].update(epoch=e if by_epoch else None,
                           iter=ends.get(e, last))
    return by_epoch, train, val, ends


def summarize(log: TrainingLog) -> dict:
    """Summarise a run (for :func:`format_summary`)."""
    def logged(key):
        return [r[key] for r in log.train if key in r]
    metrics = {}
    for key in log.metric_keys():
        points = [r for r in log.val if key in r]
        b = max(points, key=lambda r: r[key])
        at = f'epoch {b["epoch"]}' if log.by_epoch else f'iter {b["iter"]}'
        metrics[key] = dict(final=points[-1][key], best=b[key], best_at=at)
    return dict(
        name=log.name, format=log.format, metrics=metrics,
        iterations=log.train[-1]['iter'] if log.train else 0,
        epochs=log.val[-1]['epoch'] if log.by_epoch and log.val else None,
        final_loss=(logged('loss') or [None])[-1],
        peak_memory_mb=max(logged('memory'), default=None),
        **{k: statistics.median(logged(k)) if logged(k) else None
           for k in ('time', 'data_time')})


def format_summary(summary: dict,
                   metrics: Optional[Sequence[str]] = None) -> str:
    """Write a :func:`summarize` result as a few lines."""
    s, found = summary, list(summary['metrics'])
    lines = [f'{s["name"]} ({s["format"]} log): {s["iterations"]} '
             'iterations' + (f', {s["epochs"]} epochs' if s['epochs'] else '')]
    lines += ['  ' + text.format(s[key]) for key, text in (
        ('final_loss', 'final loss {:.4f}'),
        ('time', 'median time per iteration {:.3f} s'),
        ('data_time', 'median data time {:.3f} s'),
        ('peak_memory_mb', 'peak memory {:.0f} MB')) if s[key] is not None]
    for key in [m for m in metrics or DEFAULT_METRICS if m in found] or found:
        m = s['metrics'][key]
        lines.append(f'  {key}: final {m["final"]:.4g}, best {m["best"]:.4g}'
                     f' ({m["best_at"]})')
    return '\n'.join(lines)


def _default_keys(log: TrainingLog) -> List[str]:
    """The losses (``loss`` first), ``lr`` and the default metrics logged."""
    losses = dict.fromkeys(k for r in log.train for k in r if 'loss' in k)
    return sorted(losses, key=lambda k: k != 'loss') + \
        ['lr'] * any('lr' in r for r in log.train) + \
        [m for m in DEFAULT_METRICS if m in log.metric_keys()]


def plot_logs(logs: Sequence[TrainingLog], out: str,
              keys: Optional[Sequence[str]] = None, x: str = 'iter',
              title: Optional[str] = None) -> str:
    """Plot runs into a PNG: the losses in one panel, each other key alone.

    Args:
        logs (Sequence[TrainingLog]): The runs.
        out (str): The PNG to write (returned).
        keys (Sequence[str], optional): What to plot. Defaults to ``None``:
            the losses, ``lr`` and the :data:`DEFAULT_METRICS` logged.
        x (str): ``'iter'`` or ``'epoch'``. Defaults to ``'iter'``.
        title (str, optional): A title. Defaults to ``None``.
    """
    from matplotlib.figure import Figure  # not pyplot: no GUI backend
    keys = list(keys or dict.fromkeys(
        k for log in logs for k in _default_keys(log)))
    if not keys:
        raise ValueError('Nothing to plot: no losses, lr or metrics found.')
    losses = [k for k in keys if 'loss' in k]
    panels = [('loss', losses)] * bool(losses) + \
        [(k, [k]) for k in keys if k not in losses]
    cols, rows = min(len(panels), 2), -(-len(panels) // 2)
    fig, ax = Figure((6.4 * cols, 3.6 * rows), layout='constrained'), None
    for index, (panel, panel_keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, index + 1, sharex=ax)
        many = len(panel_keys) > 1
        for (run, log), (k, key) in itertools.product(
                enumerate(logs), enumerate(panel_keys)):
            xs, ys = log.series(key, x)
            if not xs:
                continue
            if many:   # colour: the term; line style: the run
                style, colour = ['-', '--', ':', '-.'][run % 4], k
                label = key if len(logs) == 1 else f'{log.name}: {key}'
            else:      # colour: the run
                style, colour, label = '-', run, log.name
            ax.plot(xs, ys, style, color=f'C{colour % 10}', markersize=3,
                    marker='o' if key in log.metric_keys() else None,
                    label=label)
        ax.set(title=panel, xlabel=x)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize='small')
    if not any(ax.lines for ax in fig.axes):
        raise ValueError(
            f'Nothing to plot against {x}: none of {", ".join(keys)} is '
            f'logged' + (' per epoch (an iteration-based run: use --x iter)'
                         if x == 'epoch' else '') + '.')
    fig.suptitle(title or '')
    fig.savefig(out, dpi=100)
    return out
