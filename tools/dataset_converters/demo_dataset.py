# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""What the two demo dataset generators share: write a dataset once per
settings, and their command line. Imported by make_demo_coco.py and
make_demo_ade.py, which run as scripts from this folder."""
import argparse
import inspect
import json
import shutil
from pathlib import Path


def write_once(out_dir, settings, subdirs, write, force=False):
    """Call ``write(out)`` to fill ``out_dir`` unless it already holds a
    dataset made with the same ``settings`` (or ``force``); returns whether
    it wrote.

    ``subdirs`` (everything ``write`` creates) are removed first, so only
    a folder of this generator's is written into: a new or empty one, or one
    with the generator's ``meta.json`` or ``incomplete.json``. Any other
    folder with content (a real dataset, say) is refused with
    FileExistsError, unless ``force``. ``OUT/incomplete.json`` marks a run
    in progress and the settings go to ``OUT/meta.json`` last, so an
    interrupted run is redone by the next one.
    """
    out = Path(out_dir)
    meta, marker = out / 'meta.json', out / 'incomplete.json'
    previous = _read_settings(meta)
    if not force and previous == settings:
        print(f'{out}: already generated')
        return False
    ours = (previous is not None and previous.keys() == settings.keys()
            or marker.is_file())
    if not force and not ours and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f'{out} is not empty and holds no meta.json of an earlier run of '
            f'this generator (writing there deletes '
            f'{", ".join(name + "/" for name in subdirs)} in it). Pick an '
            f'empty or new folder for --out, or pass --force to write there '
            f'anyway.')
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings))
    meta.unlink(missing_ok=True)
    for name in subdirs:
        shutil.rmtree(out / name, ignore_errors=True)
    write(out)
    meta.write_text(json.dumps(settings))
    marker.unlink()
    return True


def _read_settings(meta):
    """The settings in ``meta`` (a dict), or None: no file, or not a JSON
    object."""
    try:
        settings = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


def main(generate, doc, default_out):
    """The generators' command line: ``--out --seed --num-train --num-val
    --size --force``, with ``generate``'s defaults, passed to it as keyword
    arguments."""
    defaults = inspect.signature(generate).parameters
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', dest='out_dir', default=default_out,
                        help='default: %(default)s')
    at_least = {'seed': 0, 'num_train': 1, 'num_val': 1, 'size': 32}
    for name in at_least:   # a 32 px image holds its shapes
        parser.add_argument('--' + name.replace('_', '-'), type=int,
                            default=defaults[name].default,
                            help='default: %(default)s')
    parser.add_argument(
        '--force', action='store_true',
        help='regenerate even if already generated, and write into a '
        'folder that holds other files (its folders of the names the '
        'generator writes are deleted first)')
    args = vars(parser.parse_args())
    # checked here, not by mmrepvit's argparse types: importing mmrepvit
    # made a small run take 3 s instead of 0.3 s
    for name, low in at_least.items():
        if args[name] < low:
            parser.error(f"argument --{name.replace('_', '-')}: expected an "
                         f"integer >= {low}, got '{args[name]}'")
    try:
        generate(**args)
    except FileExistsError as e:   # --out is a folder of something else
        parser.error(str(e))
