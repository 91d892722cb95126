# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""End to end: the demo configs train 2 iterations and evaluate through
tools/train.py, tools/test.py and tools/dist_train.sh (2 gloo processes), on
tiny generated datasets."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO

sys.path.insert(0, str(REPO / 'tools'))

TASKS = {
    'det': dict(config='configs/det/repvit_m0_6_maskrcnn_demo.py',
                metrics=['coco/bbox_mAP', 'coco/segm_mAP'],
                ckpt='epoch_1.pth'),
    'seg': dict(config='configs/seg/repvit_m0_6_fpn_demo.py',
                metrics=['mIoU', 'aAcc'], ckpt='iter_2.pth'),
}


def tiny_config(task, tmp_path):
    """A config inheriting the demo config, on a 4-image train split, run
    for exactly 2 iterations, single-process data loading."""
    data = tmp_path / 'data'
    if task == 'det':
        from make_demo_coco import generate
        root, ckpt_interval = f'{data}/', 1   # epoch-based: 1 epoch of 2 iters
        extra = f'''
val_evaluator = dict(ann_file='{data}/annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
'''
    else:
        from make_demo_ade import generate
        root, ckpt_interval = str(data), 2    # iteration-based: 2 iters
        extra = 'train_cfg = dict(max_iters=2, val_interval=2)\n'
    generate(str(data), num_train=4, num_val=2, size=128)
    loader = 'num_workers=0, persistent_workers=False'
    body = f'''
train_dataloader = dict(batch_size=2, {loader},
                        dataset=dict(data_root='{root}'))
val_dataloader = dict({loader}, dataset=dict(data_root='{root}'))
test_dataloader = val_dataloader
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={ckpt_interval}))
''' + extra
    cfg = tmp_path / f'tiny_{task}.py'
    cfg.write_text(f"_base_ = ['{REPO / TASKS[task]['config']}']\n" + body)
    return cfg


def run(cmd, log, env=None):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env=env, timeout=600)
    assert proc.returncode == 0, Path(log).read_text()[-3000:]
    return Path(log).read_text()


def metrics(work_dir):
    (path, ) = glob.glob(str(Path(work_dir) / '*' / '*.json'))
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_demo_trains_and_tests(task, tmp_path):
    cfg = tiny_config(task, tmp_path)
    work = tmp_path / 'work'
    log = run([sys.executable, 'tools/train.py', str(cfg), '--work-dir',
               str(work)], tmp_path / 'train.log')
    assert 'Iter(train) [2/2]' in log or 'Epoch(train) [1][2/2]' in log
    ckpt = work / TASKS[task]['ckpt']
    assert ckpt.is_file()
    vis = tmp_path / 'vis'
    out = tmp_path / ('results.pkl' if task == 'det' else 'pred_png')
    run([sys.executable, 'tools/test.py', str(cfg), str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--show-dir', str(vis), '--out', str(out)],
        tmp_path / 'test.log')
    # --out: detections dumped to a pickle / label maps written as PNGs.
    assert out.is_file() if task == 'det' else len(list(out.glob('*.png'))) == 2
    result = metrics(tmp_path / 'test')
    for key in TASKS[task]['metrics']:
        assert key in result and result[key] >= 0
    # --show-dir is absolute, so both scopes draw under it.
    drawn = [f for f in vis.rglob('*') if f.suffix in ('.png', '.jpg')]
    assert len(drawn) >= 2

    # The trained checkpoint fuses for deployment and tests in deploy form.
    fused = tmp_path / 'fused.pth'
    out = run([sys.executable, 'tools/reparameterize.py', str(cfg), str(ckpt),
               str(fused)], tmp_path / 'fuse.log')
    assert 'max relative difference' in out
    state = torch.load(fused, weights_only=True)['state_dict']
    assert not any(k.startswith('backbone.') and '.bn.' in k for k in state)
    run([sys.executable, 'tools/test.py', str(cfg), str(fused), '--work-dir',
         str(tmp_path / 'test_fused'), '--cfg-options',
         'model.backbone.deploy=True'], tmp_path / 'test_fused.log')
    fused_result = metrics(tmp_path / 'test_fused')
    for key in TASKS[task]['metrics']:
        # Fusion changes outputs by float rounding only; on 2 images that
        # can move a metric by at most a borderline detection or pixel.
        assert fused_result[key] == pytest.approx(result[key], abs=0.02)


def test_resume_from_a_checkpoint(tmp_path):
    """--resume reads MMEngine's own checkpoint (message hub, optimizer) with
    torch.load(weights_only=True), PyTorch's default."""
    cfg = tiny_config('seg', tmp_path)
    work = tmp_path / 'work'
    run([sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(work)],
        tmp_path / 'train.log')
    assert torch.load(work / 'iter_2.pth', weights_only=True)['meta']
    log = run([sys.executable, 'tools/train.py', str(cfg), '--work-dir',
               str(work), '--resume', '--cfg-options', 'train_cfg.max_iters=3',
               'param_scheduler.0.end=3'], tmp_path / 'resume.log')
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/3]' in log


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_dist_train_and_test_two_gloo_processes(task, tmp_path):
    cfg = tiny_config(task, tmp_path)
    work = tmp_path / 'work'
    env = dict(os.environ, PORT=str(free_port()))
    # One image per process, so each of the 2 processes runs 2 iterations.
    log = run(['bash', 'tools/dist_train.sh', str(cfg), '2', '--work-dir',
               str(work), '--cfg-options', 'train_dataloader.batch_size=1'],
              tmp_path / 'dist.log', env=env)
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log      # MMEngine's name for the world size
    iters = ('Epoch(train) [1][2/2]' if task == 'det' else
             'Iter(train) [2/2]')
    assert iters in log
    ckpt = work / TASKS[task]['ckpt']
    assert ckpt.is_file()
    env['PORT'] = str(free_port())
    log = run(['bash', 'tools/dist_test.sh', str(cfg), str(ckpt), '2',
               '--work-dir', str(tmp_path / 'test')], tmp_path / 'dtest.log',
              env=env)
    assert 'GPU number: 2' in log
    for key in TASKS[task]['metrics']:
        assert key in metrics(tmp_path / 'test')


def test_cpu_distributed_replaces_syncbn():
    """Without CUDA, the gloo fallback turns SyncBN into BN (PyTorch's
    SyncBatchNorm raises on CPU tensors in a process group)."""
    from _runner_setup import replace_syncbn
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / 'configs/seg/repvit_m1_1_fpn_ade20k.py'))
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert replace_syncbn(cfg.model)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert not replace_syncbn(cfg.model)


def start_node(args, node_rank, port, log):
    """One torchrun 'node' of a 2-node job on this machine."""
    env = dict(os.environ, NNODES='2', NODE_RANK=str(node_rank),
               PORT=str(port))
    return subprocess.Popen(['bash'] + args, cwd=REPO, env=env,
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT)


def test_two_node_local_run(tmp_path):
    """Two torchrun nodes of one process each (NNODES=2, NODE_RANK=0|1 on
    one machine): train, then test; every node exits 0."""
    cfg = tiny_config('seg', tmp_path)
    work = tmp_path / 'work'
    for step, args in [
            ('train', ['tools/dist_train.sh', str(cfg), '1', '--work-dir',
                       str(work)]),
            ('test', ['tools/dist_test.sh', str(cfg),
                      str(work / 'iter_2.pth'), '1', '--work-dir',
                      str(tmp_path / 'test')])]:
        port = free_port()
        logs = [tmp_path / f'{step}_node{n}.log' for n in (0, 1)]
        nodes = [start_node(args, n, port, logs[n]) for n in (0, 1)]
        codes = [p.wait(timeout=600) for p in nodes]
        assert codes == [0, 0], '\n'.join(
            f'--- node {n} (exit {c}):\n' + logs[n].read_text()[-2000:]
            for n, c in enumerate(codes))
    text = logs[0].read_text()
    assert 'GPU number: 2' in text
    assert 'mIoU' in metrics(tmp_path / 'test')


def test_killed_rank_ends_every_node(tmp_path):
    """SIGKILL one rank of a 2-node training run: both nodes end, with a
    non-zero status, within a bounded time (no node waits for the dead
    rank)."""
    cfg = tiny_config('seg', tmp_path)
    with open(cfg, 'a') as f:    # long enough to be killed in the middle
        f.write('train_cfg = dict(max_iters=1000, val_interval=1000)\n'
                'param_scheduler = [dict(type="PolyLR", end=1000, '
                'by_epoch=False)]\n')
    args = ['tools/dist_train.sh', str(cfg), '1', '--work-dir',
            str(tmp_path / 'work')]
    port = free_port()
    logs = [tmp_path / f'node{n}.log' for n in (0, 1)]
    nodes = [start_node(args, n, port, logs[n]) for n in (0, 1)]
    try:
        deadline = time.monotonic() + 300
        while 'Iter(train) [' not in logs[0].read_text():
            assert time.monotonic() < deadline, logs[0].read_text()[-2000:]
            assert all(p.poll() is None for p in nodes)
            time.sleep(0.5)
        # bash exec's torchrun, so the node's pid is its agent; the worker
        # is the agent's only child.
        children = Path(f'/proc/{nodes[1].pid}/task/{nodes[1].pid}/children')
        (worker, ) = children.read_text().split()
        killed = time.monotonic()
        os.kill(int(worker), signal.SIGKILL)
        codes = [p.wait(timeout=180) for p in nodes]
        elapsed = time.monotonic() - killed
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    assert codes[0] != 0 and codes[1] != 0, codes
    # Measured here: both end within seconds; 180 s is the hard bound.
    print(f'both nodes ended {elapsed:.1f} s after the kill, codes {codes}')
