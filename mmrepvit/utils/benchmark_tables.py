# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Markdown tables of :func:`mmrepvit.utils.benchmark.run_benchmark`'s rows."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

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


def _ratio(num: Optional[float], den: Optional[float]) -> str:
    return f'{num / den:.2f}' if num and den else '-'


def _table(head: List[str], body: List[List[str]]) -> str:
    lines = ['| ' + ' | '.join(cells) + ' |' for cells in [head, *body]]
    return '\n'.join(lines[:1] + ['|' + '---|' * len(head)] + lines[1:])


def _training(rows, row, subject=None) -> Optional[Row]:
    """The training form of subject (default: the baseline) in row's group."""
    return next((r for r in rows if r.form == 'training' and (
        r.subject == subject if subject else r.baseline) and (
            r.task, r.input, r.threads) == (row.task, row.input, row.threads)),
        None)


def markdown_table(rows: Sequence[Row]) -> str:
    """Markdown table of each row's median and IQR, speed-ups and GMAC/s."""
    base = next((r.subject.split()[0] for r in rows if r.baseline), None)
    many = len({r.task for r in rows}) > 1
    with_macs = any(r.macs for r in rows)
    head = ['model', 'form'] + ['task'] * many + [
        'input', 'threads', 'median ms', 'IQR ms', 'x training'] + \
        [f'x {base}'] * bool(base) + ['GMAC/s'] * with_macs
    body = []
    for r in rows:
        refs = [_training(rows, r, r.subject)]
        refs += [_training(rows, r)] * bool(base)
        body.append(
            [r.subject, r.form] + [r.task] * many +
            [r.input, r.threads, _ms(r.median_ms), _ms(r.time.iqr * 1e3)] +
            [_ratio(ref and ref.median_ms, r.median_ms) for ref in refs] +
            [f'{r.macs / r.time.median / 1e9:.1f}' if r.macs else '-'] *
            with_macs)
    return _table(head, body)


def split_table(rows: Sequence[Row]) -> str:
    """Markdown table of where time goes: backbone, neck and heads."""
    by = {(r.subject, r.form, r.input, r.threads, r.task): r for r in rows}
    name = next((r.subject.split()[0] for r in rows if r.baseline),
                'ResNet-50')
    head = ['model', 'form', 'input', 'threads', 'backbone ms', 'neck ms',
            'heads ms', 'whole ms', f'backbone + neck x {name} (MAC bound)',
            f'whole x {name} (MAC bound)']
    body, noisy = [], False
    for key in dict.fromkeys(k[:4] for k in by if k[4] in SPLIT_TASKS):
        parts = [by.get(key + (t, )) for t in SPLIT_TASKS]
        ms = [p and p.median_ms for p in parts]
        whole = ms[2] or ms[1]
        cells = list(key)
        for a, b in zip([0] + ms, ms):   # neck: features - backbone, ...
            v = b - a if a is not None and b is not None else None
            if v is not None and (v < 0 or (whole and v > whole)):
                noisy = True
                cells.append(f'n/a (noise: {_ms(v)} ms' + (
                    f', {v / whole:.0%} of the whole)' if v > 0 else ')'))
            else:
                cells.append('-' if v is None else _ms(v) + (
                    f' ({v / whole:.0%})' if whole else ''))
        cells.append('-' if ms[2] is None else _ms(ms[2]))
        for mine in parts[1:]:
            ref = mine and _training(rows, mine)
            cells.append(
                f'{_ratio(ref and ref.median_ms, mine and mine.median_ms)} '
                f'({_ratio(ref and ref.macs, mine and mine.macs)})')
        body.append(cells)
    return _table(head, body) + (
        '\n\nn/a (noise): below zero or above the whole, so not a time: the '
        "medians' noise exceeds that part (a difference of two) here; more "
        '--rounds, --min-run-time or a quieter machine measure it.' * noisy)
