# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Markdown tables of :func:`mmrepvit.utils.benchmark.run_benchmark`'s rows."""
from dataclasses import dataclass
from typing import Optional, Sequence

from torch.utils.benchmark import Measurement

#: The tasks whose differences are a model's parts: backbone, neck, heads.
SPLIT_TASKS = ('backbone', 'features', 'predict')


@dataclass
class Row:
    """A case (``threads``: the device off the CPU), ``time`` once timed."""
    subject: str
    form: str
    task: str
    input: str
    threads: str
    macs: Optional[int] = None
    baseline: bool = False
    time: Optional[Measurement] = None

    @property
    def median_ms(self) -> float:
        return self.time.median * 1e3


def _ms(value: float) -> str:
    return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def _table(head, body) -> str:
    lines = ['| ' + ' | '.join(cells) + ' |' for cells in [head, *body]]
    return '\n'.join(lines[:1] + ['|' + '---|' * len(head)] + lines[1:])


def _speedup(rows, row, subject=None, attr='median_ms') -> str:
    """The training form of subject (default: the baseline) over row."""
    ref = row and next((r for r in rows if r.form == 'training' and (
        r.subject == subject if subject else r.baseline) and (
            r.task, r.input, r.threads) == (row.task, row.input, row.threads)),
        None)
    num, den = ref and getattr(ref, attr), row and getattr(row, attr)
    return f'{num / den:.2f}' if num and den else '-'


def _part(start, end, whole) -> str:
    """The cell of a part, end - start: ms and share, or noise."""
    v = None if start is None or end is None else end - start
    if v is not None and (v < 0 or (whole and v > whole)):
        return f'n/a (noise: {_ms(v)} ms' + (
            f', {v / whole:.0%} of the whole)' if v > 0 else ')')
    return '-' if v is None else _ms(v) + (
        f' ({v / whole:.0%})' if whole else '')


def markdown_table(rows: Sequence[Row]) -> str:
    """Markdown table of each row's median and IQR, speed-ups and GMAC/s."""
    base = next((r.subject.split()[0] for r in rows if r.baseline), None)
    many = len({r.task for r in rows}) > 1
    with_macs = any(r.macs for r in rows)
    head = ['model', 'form'] + ['task'] * many + [
        'input', 'threads', 'median ms', 'IQR ms', 'x training'] + \
        [f'x {base}'] * bool(base) + ['GMAC/s'] * with_macs
    return _table(head, [
        [r.subject, r.form] + [r.task] * many +
        [r.input, r.threads, _ms(r.median_ms), _ms(r.time.iqr * 1e3),
         _speedup(rows, r, r.subject)] + [_speedup(rows, r)] * bool(base) +
        [f'{r.macs / r.time.median / 1e9:.1f}' if r.macs else '-'] *
        with_macs for r in rows])


def split_table(rows: Sequence[Row]) -> str:
    """Markdown table of where time goes: backbone, neck and heads."""
    by = {(r.subject, r.form, r.input, r.threads, r.task): r for r in rows}
    name = next((r.subject.split()[0] for r in rows if r.baseline),
                'ResNet-50')
    head = ['model', 'form', 'input', 'threads', 'backbone ms', 'neck ms',
            'heads ms', 'whole ms', f'backbone + neck x {name} (MAC bound)',
            f'whole x {name} (MAC bound)']
    body = []
    for key in dict.fromkeys(k[:4] for k in by if k[4] in SPLIT_TASKS):
        parts = [by.get(key + (t, )) for t in SPLIT_TASKS]
        ms = [p and p.median_ms for p in parts]
        body.append(  # neck: features - backbone, heads: predict - features
            [*key] + [_part(*span, ms[2] or ms[1]) for span in zip(
                [0] + ms, ms)] + ['-' if ms[2] is None else _ms(ms[2])] +
            [f'{_speedup(rows, p)} ({_speedup(rows, p, attr="macs")})'
             for p in parts[1:]])
    noisy = any(c.startswith('n/a') for cells in body for c in cells[4:7])
    return _table(head, body) + (
        '\n\nn/a (noise): below zero or above the whole, so not a time: the '
        "medians' noise exceeds that part (a difference of two) here; more "
        '--rounds, --min-run-time or a quieter machine measure it.' * noisy)
