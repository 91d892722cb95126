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

    ``subdirs`` (everything ``write`` creates) are removed first. The
    settings go to ``OUT/meta.json`` last, so it marks a complete dataset:
    an interrupted run is redone by the next one.
    """
    out = Path(out_dir)
    meta = out / 'meta.json'
    if (not force and meta.is_file()
            and json.loads(meta.read_text()) == settings):
        print(f'{out}: already generated')
        return False
    meta.unlink(missing_ok=True)
    for name in subdirs:
        shutil.rmtree(out / name, ignore_errors=True)
    write(out)
    meta.write_text(json.dumps(settings))
    return True


def main(generate, doc, default_out):
    """The generators' command line: ``--out --seed --num-train --num-val
    --size --force``, with ``generate``'s defaults, passed to it as keyword
    arguments."""
    defaults = inspect.signature(generate).parameters
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', dest='out_dir', default=default_out,
                        help='default: %(default)s')
    for name in ('seed', 'num_train', 'num_val', 'size'):
        parser.add_argument('--' + name.replace('_', '-'), type=int,
                            default=defaults[name].default,
                            help='default: %(default)s')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if already generated')
    generate(**vars(parser.parse_args()))
