# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""metafile.yml (OpenMMLab's model index) against the configs it names.

Every paper config has an entry; every entry names a config that exists; its
metrics are the numbers the config's header comment states (parsed from the
comment, so a number changed in one place and not the other fails); its
weights belong to the config's arch; and the README's results tables give the
same numbers. The metrics are the paper's, not measured here.
"""
import re
from pathlib import Path

import pytest
import yaml

from helpers import REPO

ROOT = REPO
NUMBER = r'(\d+(?:\.\d+)?)'
WEIGHTS_BASE = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/'

# What a config header states, and the metafile metric each number is.
DET_HEADER = re.compile(
    rf'box AP {NUMBER} / AP50 {NUMBER} / AP75 {NUMBER},\s*'
    rf'mask AP {NUMBER} / AP50 {NUMBER} / AP75 {NUMBER}')
DET_METRICS = ('box AP', 'box AP50', 'box AP75',
               'mask AP', 'mask AP50', 'mask AP75')
SEG_HEADER = re.compile(rf'mIoU {NUMBER}')
SEG_METRICS = ('mIoU',)
NO_RESULT = re.compile(r'paper reports no (COCO|ADE20K) result')


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def metafile_models():
    return load_yaml(ROOT / 'metafile.yml')['Models']


def header_comment(config_path):
    """The comment block the config file starts with, as one line."""
    lines = []
    for line in Path(config_path).read_text().splitlines():
        if not line.startswith('#'):
            break
        lines.append(line.lstrip('#').strip())
    return ' '.join(lines)


def header_metrics(header):
    """{metric: value} stated by a config header, or None when it says the
    paper reports no result for it. Raises if it states neither."""
    for pattern, names in ((DET_HEADER, DET_METRICS),
                           (SEG_HEADER, SEG_METRICS)):
        found = pattern.search(header)
        if found:
            return {name: float(v) for name, v in zip(names, found.groups())}
    if NO_RESULT.search(header):
        return None
    raise ValueError(f'header states no metrics: {header[:120]!r}')


def metafile_metrics(model):
    metrics = {}
    for result in model.get('Results', []):
        for name, value in result['Metrics'].items():
            assert name not in metrics, f'{model["Name"]}: {name} twice'
            metrics[name] = float(value)
    return metrics or None


def problems(model, root=ROOT):
    """What is wrong with one metafile entry, as messages (empty: nothing)."""
    config = root / model['Config']
    if not config.is_file():
        return [f'{model["Name"]}: config {model["Config"]} does not exist']
    found = []
    if model['Name'] != config.stem:
        found.append(f'{model["Name"]}: named after another config than '
                     f'{config.name}')
    stated = header_metrics(header_comment(config))
    listed = metafile_metrics(model)
    if stated != listed:
        found.append(f'{model["Name"]}: metafile metrics {listed} but the '
                     f'config header states {stated}')
    weights = model.get('Weights')
    if (weights is None) != (listed is None):
        found.append(f'{model["Name"]}: weights go with results (and only '
                     'with results)')
    if weights is not None:
        arch = re.search(r"arch='(\w+)'", config.read_text())
        arch = arch[1] if arch else None
        if not (weights.startswith(WEIGHTS_BASE)
                and Path(weights).name.startswith(f'repvit_{arch}_')):
            found.append(f'{model["Name"]}: weights {weights} are not the '
                         f'official ones of arch {arch}')
    return found


@pytest.mark.parametrize('model', metafile_models(),
                         ids=lambda m: m['Name'])
def test_entry_matches_its_config(model):
    assert problems(model) == []


def test_model_index_imports_the_metafile():
    index = load_yaml(ROOT / 'model-index.yml')
    assert index['Import'] == ['metafile.yml']
    for path in index['Import']:
        assert (ROOT / path).is_file(), path


def test_entries_are_unique_and_in_a_collection():
    data = load_yaml(ROOT / 'metafile.yml')
    collections = {c['Name'] for c in data['Collections']}
    names = [m['Name'] for m in data['Models']]
    assert len(names) == len(set(names))
    for model in data['Models']:
        assert model['In Collection'] in collections, model['Name']


def test_every_paper_config_is_listed():
    # Every config but the CPU demos is a paper recipe and has an entry.
    configs = {str(p.relative_to(ROOT))
               for p in ROOT.glob('configs/*/*.py')
               if not p.stem.endswith('_demo')}
    listed = {m['Config'] for m in metafile_models()}
    assert configs == listed


def test_readme_results_match_the_metafile():
    # The README's results tables name each config with results on one row,
    # which must carry the paper's headline numbers.
    readme = (ROOT / 'README.md').read_text().splitlines()
    for model in metafile_models():
        metrics = metafile_metrics(model)
        if metrics is None:
            continue
        rows = [line for line in readme
                if line.startswith('|') and model['Config'] in line]
        assert len(rows) == 1, (model['Config'], rows)
        for name in ('box AP', 'mask AP', 'mIoU'):
            if name in metrics:
                value = f'{metrics[name]:.1f}'
                assert re.search(rf'(?<![\d.]){re.escape(value)}(?![\d.])',
                                 rows[0]), (model['Name'], name, rows[0])


def test_the_check_fails_on_a_mismatch(tmp_path):
    # A check that cannot fail proves nothing: a doctored header, a missing
    # config and weights of another arch must each be reported.
    model = dict(metafile_models()[0])
    config = tmp_path / model['Config']
    config.parent.mkdir(parents=True)
    text = (ROOT / model['Config']).read_text()
    assert problems(model, tmp_path) != []  # config missing
    config.write_text(text)
    assert problems(model, tmp_path) == []
    box_ap = model['Results'][0]['Metrics']['box AP']
    config.write_text(text.replace(f'box AP {box_ap}', 'box AP 12.3', 1))
    assert any('header states' in p for p in problems(model, tmp_path))
    config.write_text(text)
    model['Weights'] = WEIGHTS_BASE + 'repvit_m2_3_coco.pth'
    assert any('not the official ones' in p
               for p in problems(model, tmp_path))


def test_header_parsing():
    assert header_metrics('Paper: box AP 1.5 / AP50 2 / AP75 3.25,  mask AP '
                          '4 / AP50 5 / AP75 6') == dict(
                              zip(DET_METRICS, (1.5, 2, 3.25, 4, 5, 6)))
    assert header_metrics('Paper: mIoU 40.6 on ADE20K val') == {'mIoU': 40.6}
    assert header_metrics('The paper reports no COCO result for M0.6') is None
    with pytest.raises(ValueError):
        header_metrics('no numbers here')
