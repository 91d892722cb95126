#!/usr/bin/env python
# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""How often control passes between the project's files along one flow.

    python .dev_scripts/flow_hops.py [--until QUALNAME] -- TOOL [ARGS ...]

Runs TOOL (a script under tools/) in this process under a profiler and
records, at every Python call and return, which of the project's files
(``mmrepvit/`` and ``tools/``) runs next; frames of other packages (MMEngine,
torch) do not count, so MMEngine calling ``RepViT.init_weights`` from
``train.py``'s runner is one crossing, train.py -> repvit.py; module bodies
and class bodies (what importing runs) and what a project class's
``__init__`` or ``forward`` runs (building a module, running the network) do
not count either. Prints the
sequence of files, the number of crossings (changes of file) and of
back-and-forth steps (A -> B -> A -> B). With ``--until``, recording stops
and the process exits once the function of that qualified name (e.g.
``RepViT.init_weights``, ``Runner.load_checkpoint``) returns.

Run it from the root of the checkout to measure (``PYTHONPATH=.`` makes
that checkout's ``mmrepvit`` the one imported), e.g. for an older commit in
a git worktree.
"""
import argparse
import inspect
import os
import os.path as osp
import runpy
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--until', help='stop once this function returns')
    parser.add_argument('tool', nargs=argparse.REMAINDER)
    args = parser.parse_args()
    tool = [a for a in args.tool if a != '--']
    root = os.getcwd()
    roots = tuple(osp.join(root, d) + os.sep for d in ('mmrepvit', 'tools'))
    visits, building, started = [], [], []

    def record(code):
        path = code.co_filename
        # Module and class bodies (what importing runs) and everything a
        # module's __init__ or forward runs (building it, running the
        # network) are not part of a flow.
        if path.startswith(roots) and not building and started and \
                code.co_flags & inspect.CO_NEWLOCALS:
            name = osp.relpath(path, root)
            if not visits or visits[-1][0] != name:
                visits.append((name, code.co_qualname))

    def report():
        sys.setprofile(None)
        files = [name for name, _ in visits]
        crossings = len(files) - 1
        pingpong = sum(1 for i in range(3, len(files))
                       if files[i] == files[i - 2]
                       and files[i - 1] == files[i - 3])
        print('\n'.join(['', 'files, in the order control reached them '
                         '(with the function that ran first there):'] +
                        [f'  {f}  {q}' for f, q in visits] +
                        [f'crossings: {crossings}',
                         f'back-and-forth steps (A>B>A>B): {pingpong}']),
              file=sys.__stdout__, flush=True)

    def profile(frame, event, arg):
        if event == 'call':
            # the flow starts when the tool's main() does (not at import)
            if frame.f_code.co_name == 'main' and \
                    frame.f_code.co_filename == tool_path:
                started.append(frame)
            if frame.f_code.co_name in ('__init__', 'forward') and \
                    frame.f_code.co_filename.startswith(roots):
                building.append(frame)
            record(frame.f_code)
        elif event == 'return':
            if building and building[-1] is frame:
                building.pop()
            if args.until and frame.f_code.co_qualname == args.until:
                report()
                os._exit(0)
            if frame.f_back is not None:
                record(frame.f_back.f_code)

    sys.argv = tool
    tool_path = osp.abspath(tool[0])
    sys.path.insert(0, osp.dirname(tool_path))
    sys.setprofile(profile)
    try:
        runpy.run_path(tool_path, run_name='__main__')
    finally:
        report()


if __name__ == '__main__':
    main()
