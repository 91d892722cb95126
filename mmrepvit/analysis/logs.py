# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Training logs as series: read, plot, summarise.

Two formats, one JSON object per line:

- MMEngine (MMDetection 3.x, MMSegmentation 1.x): ``vis_data/scalars.json``
  (or ``vis_data/<timestamp>.json``). Training lines carry ``iter`` (global),
  ``epoch`` in epoch-based runs, ``lr``, ``loss`` and its terms, ``time``,
  ``data_time`` and, on CUDA, ``memory`` (MB); validation lines carry the
  metrics (``coco/bbox_mAP``, ``mIoU``, ...) and ``step`` (the epoch in
  epoch-based runs, else the iteration).
- MMCV 1.x (MMDetection 2.x, MMSegmentation 0.x: the official RepViT logs):
  ``*.log.json``, a first line of environment information, then lines with
  ``mode`` ('train' or 'val'), ``epoch``, ``iter`` (within the epoch in
  epoch-based runs, global in iteration-based ones), ``lr``, ``time``,
  losses, and on validation lines ``bbox_mAP`` / ``segm_mAP`` / ``mIoU``.
  Its names and units are converted to MMEngine's (``bbox_mAP`` ->
  ``coco/bbox_mAP``; MMSegmentation 0.x's ``mIoU``, ``mAcc``, ``aAcc``
  fractions -> percent), so both formats overlay on one plot.

Every record gets a global iteration and, in epoch-based runs, an epoch
(fractional for training records), so any run plots against either.
"""
import glob
import json
import os.path as osp
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# Plotted by default, where a log has them.
DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')
# Training-record keys that are not plotted as curves by default.
_BOOKKEEPING = {'iter', 'epoch', 'step', 'mode', 'time', 'data_time',
                'memory', 'base_lr', 'lr', 'grad_norm'}
_PERCENT_IN_MMSEG0 = ('mIoU', 'mAcc', 'aAcc', 'IoU.', 'Acc.')


@dataclass
class TrainingLog:
    """One run. ``train`` and ``val`` records are dicts of scalars with
    ``iter`` (global iteration) and ``epoch`` (None in iteration-based runs;
    fractional for training records) added."""
    name: str
    path: str
    format: str                     # 'mmengine' or 'mmcv1'
    by_epoch: bool
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)

    def train_keys(self) -> List[str]:
        keys = dict.fromkeys(k for r in self.train for k in r)
        return [k for k in keys if k not in ('iter', 'epoch', 'step')]

    def metric_keys(self) -> List[str]:
        keys = dict.fromkeys(k for r in self.val for k in r)
        return [k for k in keys
                if k not in ('iter', 'epoch', 'step', 'time', 'data_time')]

    def loss_keys(self) -> List[str]:
        """'loss' (the total) first, then its terms."""
        keys = [k for k in self.train_keys() if 'loss' in k]
        return sorted(keys, key=lambda k: k != 'loss')

    def series(self, key: str, x: str = 'iter') -> Tuple[list, list]:
        """(x values, values) of ``key`` against 'iter' or 'epoch'; empty
        lists if absent (or 'epoch' asked of an iteration-based run)."""
        records = self.val if key in self.metric_keys() else self.train
        points = [(r[x], r[key]) for r in records
                  if key in r and r.get(x) is not None]
        return [p[0] for p in points], [p[1] for p in points]


# ------------------------------------------------------------------ read
def find_log(path: str) -> str:
    """The log file at ``path``: the file itself, or in a directory the
    newest MMEngine log of a run (``vis_data/scalars.json`` in it, else in its
    timestamp directories: a work dir), else the newest ``*.log.json``."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'No log file or directory {path!r}.')
    for pattern in ('vis_data/scalars.json', '*/vis_data/scalars.json',
                    '*.log.json', '**/vis_data/scalars.json',
                    '**/*.log.json'):
        found = sorted(glob.glob(osp.join(path, pattern), recursive=True))
        if found:
            return found[-1]   # timestamp directories sort by time
    raise FileNotFoundError(
        f'No vis_data/scalars.json (MMEngine) or *.log.json (MMCV 1.x) '
        f'under {path!r}.')


def _read_lines(path: str) -> List[dict]:
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue     # a line being written by a running job
    return records


def _default_name(path: str) -> str:
    """work_dirs/demo_det/20261128_164948/vis_data/scalars.json ->
    'demo_det/20261128_164948'; x/repvit_m1_1_coco.log.json ->
    'repvit_m1_1_coco'."""
    parts = osp.normpath(osp.abspath(path)).split(osp.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return f'{parts[-4]}/{parts[-3]}'
    base = osp.basename(path)
    for suffix in ('.log.json', '.json'):
        if base.endswith(suffix):
            return base[:-len(suffix)]
    return base


def load_log(path: str, name: Optional[str] = None) -> TrainingLog:
    """Read a log of either format (see the module docstring)."""
    path = find_log(path)
    records = _read_lines(path)
    mmcv1 = any('mode' in r for r in records)
    log = (_parse_mmcv1 if mmcv1 else _parse_mmengine)(records)
    log.name, log.path = name or _default_name(path), path
    return log


def _scalars(record: dict) -> dict:
    return {k: v for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _epoch_spans(train: List[dict]) -> Dict[int, Tuple[int, int]]:
    """Epoch -> (global iteration before it, iterations in it), from the
    last training iteration logged in each epoch."""
    last = {}
    for r in train:
        last[r['epoch']] = max(last.get(r['epoch'], 0), r['iter'])
    spans, start = {}, 0
    for epoch in sorted(last):
        spans[epoch] = (start, max(last[epoch] - start, 1))
        start = last[epoch]
    return spans


def _parse_mmengine(records: List[dict]) -> TrainingLog:
    by_iter, val = {}, []
    for r in records:
        values = _scalars(r)
        if 'iter' in values:
            by_iter[values['iter']] = values    # a restart overwrites
        else:
            val.append(values)
    train = [by_iter[i] for i in sorted(by_iter)]
    by_epoch = any('epoch' in r for r in train)
    if by_epoch:
        spans = _epoch_spans(train)
        for r in train:
            start, length = spans[r['epoch']]
            r['epoch'] = r['epoch'] - 1 + (r['iter'] - start) / length
        for r in val:
            step = r.pop('step', None)
            r['epoch'] = step
            r['iter'] = (sum(spans[step]) if step in spans else None)
    else:
        for r in train:
            r['epoch'] = None
        for r in val:
            r['iter'], r['epoch'] = r.pop('step', None), None
    for r in train:
        r.pop('step', None)
    return TrainingLog('', '', 'mmengine', by_epoch, train, val)


def _mmcv1_metric(key: str, value: float) -> Tuple[str, float]:
    if key.startswith(('bbox_mAP', 'segm_mAP')):
        return f'coco/{key}', value
    if key.startswith(_PERCENT_IN_MMSEG0):
        return key, value * 100
    return key, value


def _parse_mmcv1(records: List[dict]) -> TrainingLog:
    train_raw = [r for r in records if r.get('mode') == 'train']
    # Epoch-based runs restart 'iter' at every epoch.
    by_epoch = any(b['iter'] < a['iter']
                   for a, b in zip(train_raw, train_raw[1:]))
    train, val, spans = [], [], {}
    if by_epoch:
        last = {}
        for r in records:
            if r.get('mode') in ('train', 'val'):
                last[r['epoch']] = max(last.get(r['epoch'], 0), r['iter'])
        start = 0
        for epoch in sorted(last):
            spans[epoch] = (start, last[epoch])
            start += last[epoch]
    last_iter = 0
    for r in records:
        mode = r.get('mode')
        values = {k: v for k, v in _scalars(r).items()
                  if k not in ('epoch', 'iter')}
        if mode == 'train':
            if by_epoch:
                start, length = spans[r['epoch']]
                values['iter'] = start + r['iter']
                values['epoch'] = r['epoch'] - 1 + r['iter'] / length
            else:
                values['iter'], values['epoch'] = r['iter'], None
            last_iter = values['iter']
            train.append(values)
        elif mode == 'val':
            values = dict(_mmcv1_metric(k, v) for k, v in values.items()
                          if k not in ('lr', 'time', 'data_time', 'memory'))
            if by_epoch:
                values['iter'] = sum(spans[r['epoch']])
                values['epoch'] = r['epoch']
            else:
                values['iter'], values['epoch'] = last_iter, None
            val.append(values)
    return TrainingLog('', '', 'mmcv1', by_epoch, train, val)


# -------------------------------------------------------------- summary
def summarize(log: TrainingLog) -> dict:
    """Final and best value of every metric (with the iteration / epoch),
    median seconds per iteration and of data loading, peak memory (MB,
    when logged), iterations and the last logged total loss."""
    summary = dict(name=log.name, format=log.format,
                   iterations=log.train[-1]['iter'] if log.train else 0,
                   epochs=(log.val[-1]['epoch'] if log.by_epoch and log.val
                           else None),
                   metrics={})
    for key in ('time', 'data_time'):
        values = [r[key] for r in log.train if key in r]
        summary[key] = statistics.median(values) if values else None
    memory = [r['memory'] for r in log.train if 'memory' in r]
    summary['peak_memory_mb'] = max(memory) if memory else None
    losses = [r['loss'] for r in log.train if 'loss' in r]
    summary['final_loss'] = losses[-1] if losses else None
    for key in log.metric_keys():
        points = [r for r in log.val if key in r]
        best = max(points, key=lambda r: r[key])
        summary['metrics'][key] = dict(
            final=points[-1][key], best=best[key],
            best_at=(f'epoch {best["epoch"]}' if log.by_epoch else
                     f'iter {best["iter"]}'))
    return summary


def format_summary(summary: dict,
                   metrics: Optional[Sequence[str]] = None) -> str:
    """A few readable lines; ``metrics``: which metrics (default: the usual
    ones present, else all)."""
    s = summary
    shown = [m for m in (metrics or DEFAULT_METRICS) if m in s['metrics']] \
        or list(s['metrics'])
    lines = [f'{s["name"]} ({s["format"]} log): {s["iterations"]} '
             f'iterations' + (f', {s["epochs"]} epochs' if s['epochs']
                              else '')]
    if s['final_loss'] is not None:
        lines.append(f'  final loss {s["final_loss"]:.4f}')
    if s['time'] is not None:
        lines.append(f'  median time per iteration {s["time"]:.3f} s'
                     + (f' (data {s["data_time"]:.3f} s)'
                        if s['data_time'] is not None else ''))
    if s['peak_memory_mb'] is not None:
        lines.append(f'  peak memory {s["peak_memory_mb"]:.0f} MB')
    for key in shown:
        m = s['metrics'][key]
        lines.append(f'  {key}: final {m["final"]:.4g}, best {m["best"]:.4g}'
                     f' ({m["best_at"]})')
    return '\n'.join(lines)


# ----------------------------------------------------------------- plot
def default_keys(logs: Sequence[TrainingLog]) -> List[str]:
    """The total loss and its terms, lr, and the usual metrics present."""
    keys = []
    for log in logs:
        keys += log.loss_keys()
        keys += ['lr'] if any('lr' in r for r in log.train) else []
        keys += [m for m in DEFAULT_METRICS if m in log.metric_keys()]
    return list(dict.fromkeys(keys))


def plot_logs(logs: Sequence[TrainingLog], out: str,
              keys: Optional[Sequence[str]] = None, x: str = 'iter',
              title: Optional[str] = None) -> str:
    """Plot ``keys`` (default :func:`default_keys`) of every run against
    ``x`` ('iter' or 'epoch') into the PNG ``out``: losses together in one
    panel (colour per term, line style per run), every other key in its
    own (colour per run). Returns ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    keys = list(keys or default_keys(logs))
    if not keys:
        raise ValueError('Nothing to plot: no losses, lr or metrics found.')
    losses = [k for k in keys if 'loss' in k]
    panels = ([('loss', losses)] if losses else []) + \
        [(k, [k]) for k in keys if k not in losses]
    cols = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(6.4 * cols, 3.6 * rows), layout='constrained')
    FigureCanvasAgg(fig)
    styles = ['-', '--', ':', '-.']
    colours = [f'C{i}' for i in range(10)]
    first = None
    for index, (panel, panel_keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, index + 1, sharex=first)
        first = first or ax
        for run, log in enumerate(logs):
            for k, key in enumerate(panel_keys):
                xs, ys = log.series(key, x)
                if not xs:
                    continue
                is_metric = key in log.metric_keys()
                colour = colours[(k if len(panel_keys) > 1 else run) % 10]
                style = styles[run % len(styles)] if len(panel_keys) > 1 \
                    else '-'
                label = log.name if len(panel_keys) == 1 else (
                    f'{log.name}: {key}' if len(logs) > 1 else key)
                ax.plot(xs, ys, style, color=colour, label=label,
                        marker='o' if is_metric else None, markersize=3)
        ax.set_title(panel)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    fig.savefig(out, dpi=100)
    return out
