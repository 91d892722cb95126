# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Training that survives being killed (mmrepvit/resume.py through
tools/train.py): a run killed with SIGKILL resumes with --resume and ends
bit-identical to a run that was never interrupted (weights, optimizer,
scheduler, message hub); a kill while a checkpoint is written, or a broken
newest checkpoint, leaves --resume the previous one. The demo configs on the
tiny demo data, at 64 (seg) and 128 (det) pixels, on CPU, seed 0, with
single-process data loading; the kills happen at fixed points
(tests/kill_hooks.py)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmrepvit  # noqa: F401,E402  (weights-only loading of MMEngine files)
from helpers import REPO, logged_messages
from mmrepvit.utils import checkpoint_problem, find_resume_checkpoint

SEG = '''
_base_ = ['{repo}/configs/seg/repvit_m0_6_fpn_demo.py']
crop_size = (64, 64)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{data}/seg', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_iters=6)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts={keep}))
'''

DET = '''
_base_ = ['{repo}/configs/det/repvit_m0_6_maskrcnn_demo.py']
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{data}/det/', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
'''

KILL = '''
_base_ = ['{base}']
custom_imports = dict(imports=['mmrepvit', 'kill_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='{hook}', iteration={iteration})]
'''


def write(path, template, **fields):
    path.write_text(template.format(repo=REPO, **fields))
    return path


def train(cfg, work, log, *extra, status=0):
    """tools/train.py in a child process (tests/ on its path, for
    kill_hooks); returns its log after checking its exit status (minus a
    signal's number when a signal ended it)."""
    paths = [str(REPO), str(REPO / 'tests'), os.environ.get('PYTHONPATH')]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    with open(log, 'w') as f:
        proc = subprocess.run(
            [sys.executable, 'tools/train.py', str(cfg), '--work-dir',
             str(work), *extra], cwd=REPO, stdout=f,
            stderr=subprocess.STDOUT, env=env, timeout=900)
    text = Path(log).read_text()
    assert proc.returncode == status, text[-3000:]
    return text


def assert_same_training_state(resumed, uninterrupted):
    """Two checkpoints hold the same weights, buffers, optimizer state,
    scheduler state, iteration counters and logged losses and learning
    rates, bit for bit."""
    from mmrepvit.utils import read_checkpoint
    a, b = read_checkpoint(resumed), read_checkpoint(uninterrupted)
    assert (a['meta']['epoch'], a['meta']['iter']) == \
        (b['meta']['epoch'], b['meta']['iter'])
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differ = [k for k in a['state_dict']
              if not torch.equal(a['state_dict'][k], b['state_dict'][k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'
    opt_a, opt_b = a['optimizer'], b['optimizer']
    assert opt_a['param_groups'] == opt_b['param_groups']
    assert opt_a['state'].keys() == opt_b['state'].keys()
    for i, state in opt_a['state'].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b['state'][i][name]), (i, name)
    assert a['param_schedulers'] == b['param_schedulers']
    scalars_a = a['message_hub']['log_scalars']
    scalars_b = b['message_hub']['log_scalars']
    logged = [k for k in scalars_b if 'loss' in k or k == 'train/lr']
    assert logged
    for key in logged:   # the whole history: iterations before the kill too
        for x, y in zip(scalars_a[key].data, scalars_b[key].data):
            assert np.array_equal(x, y), key
    assert a['message_hub']['runtime_info']['iter'] == \
        b['message_hub']['runtime_info']['iter']


@pytest.fixture(scope='module')
def seg_run(demo_data, tmp_path_factory):  # noqa: F811
    """The seg config (6 iterations, a checkpoint every 2) trained without
    interruption: (config, work dir)."""
    root = tmp_path_factory.mktemp('seg_run')
    cfg = write(root / 'seg.py', SEG, data=demo_data, keep=-1)
    log = train(cfg, root / 'work', root / 'train.log')
    assert 'Iter(train) [6/6]' in log
    return cfg, root / 'work'


def test_seg_killed_run_resumes_bit_identical(seg_run, tmp_path):
    """SIGKILL after iteration 5; --resume continues from iter_4.pth."""
    cfg, reference = seg_run
    killed = write(tmp_path / 'kill.py', KILL, base=cfg,
                   hook='KillAfterIteration', iteration=5)
    work = tmp_path / 'work'
    log = train(killed, work, tmp_path / 'killed.log',
                status=-signal.SIGKILL)
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [6/6]' not in log
    assert (work / 'iter_4.pth').is_file()
    assert not (work / 'iter_6.pth').exists()

    log = train(cfg, work, tmp_path / 'resumed.log', '--resume')
    assert 'resumed epoch: 0, iter: 4' in log
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [6/6]' in log
    assert_same_training_state(work / 'iter_6.pth', reference / 'iter_6.pth')


def test_seg_kill_while_saving_and_a_broken_newest_checkpoint(
        seg_run, demo_data, tmp_path):  # noqa: F811
    """Killed by the kernel in the middle of writing iter_6.pth, with
    max_keep_ckpts=2 (MMEngine's CheckpointHook would already have deleted
    iter_2.pth): iter_6.pth does not appear and iter_2.pth is still there.
    Then the newest checkpoint, iter_4.pth, the one last_checkpoint names, is
    cut short as well (a full disk, a copy that stopped): --resume warns,
    naming it, and continues from iter_2.pth."""
    _, reference = seg_run
    cfg = write(tmp_path / 'seg.py', SEG, data=demo_data, keep=2)
    killed = write(tmp_path / 'kill.py', KILL, base=cfg,
                   hook='KillWhileSaving', iteration=6)
    work = tmp_path / 'work'
    train(killed, work, tmp_path / 'killed.log', status=-signal.SIGXFSZ)
    assert (work / 'iter_6.pth.part').stat().st_size == 1 << 20   # cut there
    assert not (work / 'iter_6.pth').exists()
    for name in ('iter_2.pth', 'iter_4.pth'):
        assert checkpoint_problem(str(work / name)) is None
    last = (work / 'last_checkpoint').read_text()
    assert last == str(work / 'iter_4.pth')

    data = (work / 'iter_4.pth').read_bytes()
    (work / 'iter_4.pth').write_bytes(data[:len(data) // 2])
    log = train(cfg, work, tmp_path / 'resumed.log', '--resume')
    assert f'Cannot resume from {last} (it is not a complete checkpoint ' \
           f'archive' in log
    assert f'resuming from {work / "iter_2.pth"}, the newest whole ' \
           f'checkpoint' in log
    assert 'resumed epoch: 0, iter: 2' in log and 'Iter(train) [6/6]' in log
    # The broken file was replaced, the part file removed, iter_2.pth
    # dropped once iter_6.pth was complete.
    assert sorted(p.name for p in work.glob('*.pth*')) == ['iter_4.pth',
                                                           'iter_6.pth']
    assert checkpoint_problem(str(work / 'iter_4.pth')) is None
    assert_same_training_state(work / 'iter_6.pth', reference / 'iter_6.pth')


def test_det_killed_run_resumes_bit_identical(demo_data,  # noqa: F811
                                              tmp_path):
    """Epoch-based: 2 epochs of 2 iterations, a checkpoint per epoch; killed
    in the middle of epoch 2, resumed from epoch_1.pth."""
    cfg = write(tmp_path / 'det.py', DET, data=demo_data)
    log = train(cfg, tmp_path / 'reference', tmp_path / 'reference.log')
    assert 'Epoch(train) [2][2/2]' in log

    killed = write(tmp_path / 'kill.py', KILL, base=cfg,
                   hook='KillAfterIteration', iteration=3)
    work = tmp_path / 'work'
    log = train(killed, work, tmp_path / 'killed.log',
                status=-signal.SIGKILL)
    assert 'Epoch(train) [2][1/2]' in log and '[2][2/2]' not in log
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']

    log = train(cfg, work, tmp_path / 'resumed.log', '--resume')
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][2/2]' in log
    assert_same_training_state(work / 'epoch_2.pth',
                               tmp_path / 'reference' / 'epoch_2.pth')


# ------------------------------------------------ choosing the checkpoint
def save(path, value=1.0):
    torch.save({'meta': {}, 'state_dict': {'w': torch.full((256, ), value)}},
               path)
    return path


def test_checkpoint_problem_names_what_is_wrong(tmp_path):
    good = save(tmp_path / 'good.pth')
    assert checkpoint_problem(str(good)) is None
    assert checkpoint_problem(str(tmp_path / 'missing.pth')) == \
        'the file does not exist'
    assert checkpoint_problem(str(tmp_path)) == \
        'it is a directory, not a checkpoint file in it'
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == \
        'the file is empty'
    data = good.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) - 100])
    assert 'not a complete checkpoint archive' in \
        checkpoint_problem(str(tmp_path / 'cut.pth'))
    (tmp_path / 'page.pth').write_text('<html>Not Found</html>')
    assert 'not a complete checkpoint archive' in \
        checkpoint_problem(str(tmp_path / 'page.pth'))
    # One byte of the tensor data flipped: the zip is intact, its CRC not.
    offset = data.index(torch.full((256, ), 1.0).numpy().tobytes())
    flipped = bytearray(data)
    flipped[offset + 10] ^= 0xFF
    (tmp_path / 'flipped.pth').write_bytes(bytes(flipped))
    assert 'corrupted (CRC mismatch)' in \
        checkpoint_problem(str(tmp_path / 'flipped.pth'))


def test_find_resume_checkpoint(tmp_path):
    # No last_checkpoint: nothing to resume (MMEngine then starts afresh).
    assert find_resume_checkpoint(str(tmp_path)) is None
    for step in (2, 4, 6):
        save(tmp_path / f'iter_{step}.pth', step)
    # Of an older, longer run, and of another kind: never taken while
    # last_checkpoint names a file.
    for old in ('iter_8.pth', 'epoch_5.pth'):
        os.utime(save(tmp_path / old), (0, 0))
    last = tmp_path / 'last_checkpoint'
    last.write_text(str(tmp_path / 'iter_6.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_6.pth')
    # The newest is broken: the one before it.
    (tmp_path / 'iter_6.pth').write_bytes(b'PK\x03\x04 cut')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_4.pth')
    # last_checkpoint cut short while written (empty): the whole
    # checkpoint written last.
    last.write_text('')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_4.pth')
    # Nothing whole before the named one: an error naming every file.
    last.write_text(str(tmp_path / 'iter_6.pth'))
    for step in (2, 4):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'')
    with pytest.raises(RuntimeError) as error:
        find_resume_checkpoint(str(tmp_path))
    for step in (2, 4, 6):   # each once
        assert str(error.value).count(f'iter_{step}.pth') == 1
    assert 'Train again without --resume' in str(error.value)
    # a named file that is gone, nothing before it: named once
    for step in (2, 4, 6):
        (tmp_path / f'iter_{step}.pth').unlink()
    with pytest.raises(RuntimeError) as error:
        find_resume_checkpoint(str(tmp_path))
    assert str(error.value).count(
        f"{tmp_path / 'iter_6.pth'}: the file does not exist") == 1


def test_find_resume_checkpoint_in_a_moved_work_dir(tmp_path):
    # A work dir moved or copied: last_checkpoint still names the old
    # place, the checkpoints are here.
    work = tmp_path / 'moved'
    work.mkdir()
    for step in (2, 4):
        save(work / f'iter_{step}.pth', step)
    (work / 'last_checkpoint').write_text(str(tmp_path / 'old/iter_4.pth'))
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_4.pth')
    # Copied, the old place still there: this work dir's own checkpoints
    # (warned, naming both), not the other run's.
    old = tmp_path / 'old'
    old.mkdir()
    for step in (2, 4):
        save(old / f'iter_{step}.pth', step)
    with logged_messages() as messages:
        assert find_resume_checkpoint(str(work)) == str(work / 'iter_4.pth')
    assert any(f"names {old / 'iter_4.pth'}; resuming from "
               f"{work / 'iter_4.pth'}, this work dir's checkpoint" in m
               for m in messages)
    # Its copy broken too: the one before it, from the work dir.
    (work / 'iter_4.pth').write_bytes(b'')
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_2.pth')
    # Checkpoints saved to an out_dir are looked for there first.
    out = tmp_path / 'out_dir'
    out.mkdir()
    save(out / 'iter_6.pth', 6)
    save(out / 'iter_3.pth', 3)
    (work / 'last_checkpoint').write_text(str(out / 'iter_6.pth'))
    assert find_resume_checkpoint(str(work)) == str(out / 'iter_6.pth')
    (out / 'iter_6.pth').write_bytes(b'')
    assert find_resume_checkpoint(str(work)) == str(out / 'iter_3.pth')
