# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""The parts of .dev_scripts/gpu_check.py that run without a GPU: its
arguments, the commands of its steps, the synthetic data and the training
config made of it, reading the training logs, the report, the time limits,
and the offline install's constraints and stand-in wheel."""
import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from helpers import REPO, import_tool

gc = import_tool('.dev_scripts/gpu_check.py')


def args_of(tmp_path, *extra):
    return gc.parse_args(['--work', str(tmp_path / 'work'), *extra])


# ----------------------------------------------------------- arguments


def test_defaults(tmp_path):
    args = args_of(tmp_path)
    assert (args.budget, args.iters, args.warmup_iters) == (480, 50, 10)
    assert args.mmcv == 'build' and args.skip == [] and not args.dry_run
    assert args.out == tmp_path / 'work' / 'gpu_check.md'
    assert args.python == sys.executable


@pytest.mark.parametrize('argv', [
    ['--budget', '0'], ['--iters', 'x'], ['--iters', '10',
                                          '--warmup-iters', '10'],
    ['--skip', 'everything'], ['--mmcv', 'conda'],
    ['--wheelhouse', '/nonexistent/wheels'], ['--for-python', '12']])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        gc.parse_args(argv)
    assert exit_.value.code == 2
    assert 'error' in capsys.readouterr().err


def test_steps_run_the_tools_as_asked(tmp_path):
    args = args_of(tmp_path, '--iters', '20', '--bench-args', '--rounds 2')
    steps = {s.name: s for s in gc.plan_steps(args)}
    assert tuple(steps) == gc.STEPS
    for name, config in (('bench-det', gc.DET_CONFIG),
                         ('bench-seg', gc.SEG_CONFIG)):
        cmd = [str(c) for c in steps[name].cmd]
        assert cmd[1:6] == ['tools/analysis_tools/benchmark.py', config,
                            '--split', '--device', 'cuda']
        assert '--cuda-amp' in cmd and cmd[-4:-2] == ['--rounds', '2']
    assert '--amp' not in steps['train'].cmd
    assert steps['train-amp'].cmd[-1] == '--amp'
    assert steps['install'].cmd == ['bash', 'tools/install.sh']
    env = steps['install'].env
    assert env['MMREPVIT_CACHE'] == args.work / 'mmcv-cache'  # timed build
    assert int(env['MMCV_BUILD_JOBS']) == os.cpu_count()
    assert 'PIP_NO_INDEX' not in env
    # every tool and config a step names exists
    for step in steps.values():
        for part in map(str, step.cmd):
            if part.startswith(('tools/', 'tests/', 'configs/')):
                assert (REPO / part).is_file(), part
    assert steps['test-cuda'].needs == ('install', )

    offline = args_of(tmp_path, '--wheelhouse', str(tmp_path))
    env = gc.plan_steps(offline)[0].env
    assert env['PIP_NO_INDEX'] == '1'
    assert str(tmp_path) in env['PIP_FIND_LINKS'].split()
    assert env['MMREPVIT_CONSTRAINTS'] == \
        offline.work / 'offline-constraints.txt'


def test_dry_run_writes_the_plan(tmp_path):
    out = tmp_path / 'report.md'
    done = subprocess.run(
        ['bash', str(REPO / '.dev_scripts' / 'gpu_check.sh'), '--dry-run',
         '--work', str(tmp_path / 'work'), '--out', str(out)],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert 'dry run' in report
    assert '--split --device cuda --cuda-amp' in report
    assert '| official (RTX 4090, torch 2.0.1' in report


# ----------------------------------------------------------- data and config


def test_synthetic_data_and_training_config(tmp_path):
    """The data step (make_demo_coco.py, small here), and the training
    config made of its output: the paper's model at 2 images of 1333x800
    per batch, random weights, N iterations, no validation."""
    args = args_of(tmp_path)
    data = args.work / 'data' / 'coco'
    step = gc.plan_steps(args)[1]
    assert step.name == 'data'
    step.cmd = [*step.cmd[:-6], '--num-train', 2, '--num-val', 1,
                '--size', 96]
    logs = tmp_path / 'logs'
    logs.mkdir()
    gc.run_step(step, time.monotonic() + 120, logs)
    gc.annotate(step, args)
    assert step.status == 'ok', gc.tail(step.log)
    assert step.result['summary'].startswith('train: 2 images')
    classes = gc.dataset_classes(data)
    assert classes == ['circle', 'triangle', 'square', 'star']

    from mmengine.config import Config
    path = tmp_path / 'cfg.py'
    path.write_text(gc.synthetic_config(gc.DET_CONFIG, data, classes, 50, 10))
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == 'RepViT'
    assert cfg.model.backbone.arch == 'm1_1'
    assert cfg.model.backbone.init_cfg is None  # nothing downloaded
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=50,
                                 val_begin=51, val_interval=51)
    assert cfg.default_hooks.logger.interval == 10
    assert cfg.default_hooks.checkpoint.save_last is False
    assert cfg.train_dataloader.dataset.data_root == f'{data}/'

    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 2
    item = dataset[0]
    assert tuple(item['inputs'].shape) == (3, 800, 1333)
    assert len(item['data_samples'].gt_instances) >= 1


# ----------------------------------------------------------- results


def write_scalars(work_dir, records):
    folder = work_dir / '20260101_000000' / 'vis_data'
    folder.mkdir(parents=True)
    (folder / 'scalars.json').write_text(
        ''.join(json.dumps(r) + '\n' for r in records))


def test_training_numbers(tmp_path):
    records = [dict(lr=1e-6, data_time=0.5, loss=5.0, time=2.0, iter=10,
                    memory=4000, step=10)]
    records += [dict(lr=1e-5, data_time=0.01, loss=4.0 - i, time=0.2 + i / 100,
                     iter=10 * i, memory=5000 + i, step=10 * i)
                for i in range(2, 6)]
    write_scalars(tmp_path, records)
    got = gc.training_numbers(tmp_path, warmup=10)
    assert got['s_per_iter'] == pytest.approx(0.235)  # iterations 11-50
    assert got['data_s_per_iter'] == pytest.approx(0.01)
    assert got['memory_mb'] == 5005 and got['loss'] == records[-1]['loss']
    assert got['iters'] == 50
    assert gc.training_numbers(tmp_path / 'none', 10) == {}


def test_tool_outputs_are_read():
    install = ('\x1b[1m[mmrepvit install]\x1b[0m building mmcv 2.1.0 with '
               'compiled CPU and CUDA ops from source (torch2.11.0-cu130-'
               'py312-cudaops-sm90)\n[mmrepvit install] built mmcv 2.1.0 in '
               '4 min 7 s (16 jobs); cached /x.whl\n[mmrepvit install] ready:'
               ' torch 2.11.0+cu130, mmcv 2.1.0\n')
    got = gc.install_numbers(install)
    assert got['build_seconds'] == 247
    assert got['mmcv'] == 'built in 4 min 7 s (16 jobs)'
    assert got['ops'] == 'CPU and CUDA ops'
    assert got['ready'].startswith('torch 2.11.0')
    assert gc.install_numbers('[mmrepvit install] using cached mmcv wheel '
                              '/a.whl')['mmcv'].startswith('from the wheel')
    failed = gc.install_numbers('[mmrepvit install] FAILED: torch sees a GPU')
    assert failed['failed'] == 'torch sees a GPU'
    assert gc.pytest_summary('..s\n==== 5 passed, 1 skipped in 3.2s ====\n') \
        == '5 passed, 1 skipped in 3.2s'


def test_report(tmp_path):
    args = args_of(tmp_path)
    steps = gc.plan_steps(args)
    by = {s.name: s for s in steps}
    by['install'].status, by['install'].seconds = 'ok', 250.0
    by['install'].result = gc.install_numbers(
        '[mmrepvit install] built mmcv 2.1.0 in 4 min 0 s (16 jobs)')
    by['train'].status, by['train'].seconds = 'ok', 41.0
    by['train'].result = dict(s_per_iter=0.106, data_s_per_iter=0.004,
                              memory_mb=5321, loss=3.25, iters=50)
    by['train-amp'].status = 'timed out after 30 s'
    by['train-amp'].log = tmp_path / 'amp.log'
    by['train-amp'].log.write_text('first\n' + 'line\n' * 40 + 'CUDA oops\n')
    by['bench-det'].status = 'ok'
    by['bench-det'].result = dict(table='| form | ms |\n|---|---|\n| a | 1 |')
    by['bench-seg'].status = 'skipped: 3 s of the budget left'
    report = gc.render_report({'gpu': 'NVIDIA H100 80GB HBM3, 81559 MiB',
                               'commit': 'abc1234', 'date': 'today'},
                              steps, args)
    assert report.startswith('# GPU check of mmrepvit: NVIDIA H100')
    assert '| official (RTX 4090, torch 2.0.1, official log ' \
        'repvit_m1_1_coco.json) | 0.212 | - | 5,942 | - |' in report
    assert '| this GPU, fp32 | 0.106 (0.50x official) | 0.004 | 5,321 | ' \
        '3.250 |' in report
    assert '| this GPU, AMP | timed out after 30 s |' in report
    assert 'built in 4 min 0 s (16 jobs)' in report
    assert '| a | 1 |' in report
    assert 'CUDA oops' in report and 'first' not in report  # the tail
    assert 'skipped: 3 s of the budget left' in report
    assert 'all steps 291 s of a 480 s budget' in report


# ----------------------------------------------------------- time limits


def test_steps_are_held_to_their_time(tmp_path):
    fast = gc.Step('fail', 'fails', [sys.executable, '-c',
                                     'import sys; sys.exit(3)'], cap=30)
    gc.run_step(fast, time.monotonic() + 60, tmp_path)
    assert fast.status == 'failed (exit 3)'
    slow = gc.Step('slow', 'sleeps', [sys.executable, '-c',
                                      'import time; time.sleep(60)'], cap=1)
    gc.run_step(slow, time.monotonic() + 60, tmp_path)
    assert slow.status == 'timed out after 1 s' and slow.seconds < 10
    late = gc.Step('late', 'no time', ['true'], cap=30)
    gc.run_step(late, time.monotonic() + 2, tmp_path)
    assert late.status.startswith('skipped: ') and late.log is None


# ----------------------------------------------------------- offline installs


def test_offline_constraints_keep_what_is_installed():
    installed = {'numpy': '2.5.2', 'setuptools': '80.9.0', 'mmcv': '2.0.1',
                 'torch': '2.11.0+cu130', 'odd': 'unknown'}
    wheels = {'setuptools': '69.5.1', 'mmengine': '0.10.7'}
    lines = gc.offline_constraints(installed, wheels).splitlines()
    assert lines == ['mmengine==0.10.7', 'numpy==2.5.2',
                     'setuptools==69.5.1', 'torch==2.11.0+cu130']


def test_wheelhouse_contents(tmp_path):
    pins = gc.wheelhouse_list(REPO, '3.12')
    names = [gc.norm(p.split('==')[0]) for p in pins]
    assert len(names) == len(set(names))
    for pin in gc.requirement_pins(REPO):
        assert pin in pins
    assert gc.SETUPTOOLS in pins and 'addict==2.4.0' in pins
    # the 3.10-only lines of constraints.txt are not taken for 3.12
    assert gc.constraint_pin('numpy', REPO, '3.12') != \
        gc.constraint_pin('numpy', REPO, '3.10')
    for name in ('mmcv-2.1.0.tar.gz', 'yapf-0.43.0-py3-none-any.whl',
                 'regex-2026.5.9-cp312-cp312-manylinux.whl', 'notes.txt'):
        (tmp_path / name).write_text('')
    assert gc.wheelhouse_versions(tmp_path) == {
        'mmcv': '2.1.0', 'yapf': '0.43.0', 'regex': '2026.5.9'}


def test_stand_in_wheel_satisfies_pip(tmp_path):
    wheel = gc.stand_in_wheel(tmp_path, 'opencv-python', '4.12.0.88',
                              'cv2 from opencv-python-headless')
    assert wheel.name == 'opencv_python-4.12.0.88-py3-none-any.whl'
    with zipfile.ZipFile(wheel) as zf:
        assert all('.dist-info/' in n for n in zf.namelist())
        meta = zf.read('opencv_python-4.12.0.88.dist-info/METADATA').decode()
    assert 'Name: opencv-python\nVersion: 4.12.0.88' in meta
    target = tmp_path / 'site'
    done = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps',
         '--disable-pip-version-check', '--no-compile', '--target',
         str(target), '--find-links', str(tmp_path),
         'opencv-python==4.12.0.88'], capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    installed = [p.name for p in target.iterdir()]
    assert installed == ['opencv_python-4.12.0.88.dist-info'], installed


def test_main_runs_the_steps_and_reports_each(tmp_path, monkeypatch):
    """The whole run with stand-in commands: steps in order, a step whose
    needs did not pass is skipped, the report is written after each step
    and says what each gave."""
    work = tmp_path / 'work'
    py = sys.executable

    def say(text, status=0):
        return [py, '-c', f'print({text!r}); raise SystemExit({status})']

    def write(path, text):
        return [py, '-c', 'import pathlib, sys; p = pathlib.Path(sys.argv[1]);'
                ' p.parent.mkdir(parents=True, exist_ok=True); '
                'p.write_text(sys.argv[2])', str(path), text]

    coco = {'categories': [{'id': 1, 'name': 'circle'}]}
    scalars = ''.join(json.dumps(dict(iter=i, time=0.1, data_time=0.01,
                                      memory=4000 + i, loss=1.0)) + '\n'
                      for i in (10, 20))

    def steps(args):
        return [
            gc.Step('install', 'install', say('[mmrepvit install] built mmcv '
                                              '2.1.0 in 0 min 3 s (16 jobs)'),
                    cap=30),
            gc.Step('data', 'data', write(
                work / 'data' / 'coco' / 'annotations' /
                'instances_train.json', json.dumps(coco)), cap=30),
            gc.Step('train', 'train', write(
                work / 'train' / 'x' / 'vis_data' / 'scalars.json', scalars),
                cap=30, needs=('install', 'data')),
            gc.Step('train-amp', 'train amp', say('CUDA out of memory', 3),
                    cap=30),
            gc.Step('test-cuda', 'test', say('== 6 passed in 2.0s =='),
                    cap=30),
            gc.Step('bench-det', 'bench det', write(
                work / 'bench-det.md', '| det | 1 ms |'), cap=30),
            gc.Step('bench-seg', 'bench seg', say('not run'), cap=30,
                    needs=('train-amp', )),
        ]

    monkeypatch.setattr(gc, 'plan_steps', steps)
    monkeypatch.setattr(gc, 'machine_info', lambda python, probe=True: {
        'gpu': 'Stand-in GPU', 'torch': '2.1.2 CUDA 12.1 GPU: True'})
    assert gc.main(['--work', str(work), '--commit', 'abc1234']) == 1
    report = (work / 'gpu_check.md').read_text()
    assert 'commit abc1234' in report
    assert '| install | ok |' in report and 'built in 0 min 3 s' in report
    assert '| train | ok |' in report and '0.100 s/iter, 4,020 MB peak' \
        in report
    assert '| train amp | failed (exit 3) |' in report
    assert 'CUDA out of memory' in report  # the failed step's log tail
    assert '6 passed in 2.0s' in report and '| det | 1 ms |' in report
    assert '| bench seg | skipped: train-amp did not pass |' in report
    config = (work / 'configs' / 'maskrcnn_m1_1.py').read_text()
    assert "classes = ('circle',)" in config
