# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""End to end: the demo configs train 2 iterations and evaluate through
tools/train.py, tools/test.py and tools/dist_train.sh (2 gloo processes), on
tiny generated datasets."""
import glob
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import REPO, import_tool, run_tool

TASKS = {
    'det': dict(config='configs/det/repvit_m0_6_maskrcnn_demo.py',
                metrics=['coco/bbox_mAP', 'coco/segm_mAP'],
                ckpt='epoch_1.pth'),
    'seg': dict(config='configs/seg/repvit_m0_6_fpn_demo.py',
                metrics=['mIoU', 'aAcc'], ckpt='iter_2.pth'),
}


@pytest.fixture
def tiny_config(demo_data, tmp_path):
    """Write a config inheriting a demo config, on the tiny dataset, run for
    exactly 2 iterations with single-process data loading."""

    def write(task):
        data = demo_data / task
        if task == 'det':
            root, ckpt_interval = f'{data}/', 1  # epoch-based: 1 epoch, 2 it
            extra = f'''
val_evaluator = dict(ann_file='{data}/annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
'''
        else:
            root, ckpt_interval = str(data), 2   # iteration-based: 2 iters
            extra = 'train_cfg = dict(max_iters=2, val_interval=2)\n'
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

    return write


def run(cmd, log, env=None, cwd=REPO):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env=env, timeout=600)
    assert proc.returncode == 0, Path(log).read_text()[-3000:]
    return Path(log).read_text()


def metrics(work_dir):
    (path, ) = glob.glob(str(Path(work_dir) / '*' / '*.json'))
    return json.loads(Path(path).read_text())


def predictions(task, out):
    """What tools/test.py --out wrote: per image (boxes, scores, labels,
    masks) for detection, the label map for segmentation."""
    if task == 'det':
        from pycocotools import mask as mask_util
        with open(out, 'rb') as f:
            results = pickle.load(f)
        return {r['img_path']: tuple(
            np.asarray(r['pred_instances'][k])
            for k in ('bboxes', 'scores', 'labels')) + (
                mask_util.decode(r['pred_instances']['masks']), )
            for r in results}
    import cv2
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            for p in sorted(out.glob('*.png'))}


def assert_same_predictions(task, original, other):
    """Fusion changes the backbone's outputs by float rounding (~1e-6
    relative), so every detection stays: same labels, boxes within 0.01 px,
    scores within 1e-4, at most 0.1% of mask pixels flipped; label maps: at
    most 0.1% of pixels flip (where two classes' logits tie)."""
    assert other.keys() == original.keys()
    for key, before in original.items():
        after = other[key]
        if task == 'det':
            (b0, s0, l0, m0), (b1, s1, l1, m1) = before, after
            assert np.array_equal(l0, l1) and len(b0) == len(b1)
            assert np.allclose(b0, b1, atol=1e-2)
            assert np.allclose(s0, s1, atol=1e-4)
            assert m0.shape == m1.shape and (m0 != m1).mean() <= 1e-3
        else:
            assert before.shape == after.shape
            assert (before != after).mean() <= 1e-3


def inferencer_predictions(task, inferencer, images):
    """Per image what predictions() reads, from an mmdet / mmseg
    inferencer."""
    samples = inferencer(images, return_datasamples=True)
    if task == 'det':
        return {img: tuple(
            sample.pred_instances[k].numpy()
            for k in ('bboxes', 'scores', 'labels', 'masks'))
            for img, sample in zip(images, samples['predictions'])}
    return {img: sample.pred_sem_seg.data[0].numpy()
            for img, sample in zip(images, samples)}


def check_inferencers(task, cfg, ckpt, fused, images):
    """DetInferencer / MMSegInferencer and init_detector / init_model take
    the fused checkpoint as they are and predict what the original does, and
    so does the original after fuse_model() in memory."""
    from mmrepvit import fuse_model
    if task == 'det':
        from mmdet.apis import DetInferencer as Inferencer
        from mmdet.apis import init_detector as init
    else:
        from mmseg.apis import MMSegInferencer as Inferencer
        from mmseg.apis import init_model as init
    original = Inferencer(model=str(cfg), weights=str(ckpt), device='cpu')
    before = inferencer_predictions(task, original, images)
    fused_inferencer = Inferencer(model=str(cfg), weights=str(fused),
                                  device='cpu')
    assert fused_inferencer.model.backbone.deploy
    assert_same_predictions(task, before, inferencer_predictions(
        task, fused_inferencer, images))
    fuse_model(original.model, channels_last=True)
    assert_same_predictions(task, before, inferencer_predictions(
        task, original, images))
    model = init(str(cfg), str(fused), device='cpu')
    saved = torch.load(fused, weights_only=True)['state_dict']
    assert model.backbone.deploy
    for k, v in model.state_dict().items():
        if k in saved:
            assert torch.equal(v, saved[k]), k


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_demo_trains_tests_and_fuses(task, tiny_config, demo_data,
                                     tmp_path):
    cfg = tiny_config(task)
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
    original = predictions(task, out)
    assert len(original) == 2    # one entry per validation image
    if task == 'det':    # the comparisons below compare detections
        assert sum(len(boxes) for boxes, *_ in original.values()) > 0
    result = metrics(tmp_path / 'test')
    assert set(TASKS[task]['metrics']) <= set(result)
    # --show-dir is absolute, so both scopes draw under it.
    drawn = [f for f in vis.rglob('*') if f.suffix in ('.png', '.jpg')]
    assert len(drawn) == 2

    # The trained checkpoint fuses for deployment, and the fused file runs
    # through tools/test.py as it is, with the same predictions and metric.
    fused = tmp_path / 'fused.pth'
    out_log = run([sys.executable, 'tools/deploy/reparameterize.py',
                   str(cfg), str(ckpt), str(fused)], tmp_path / 'fuse.log')
    assert 'max relative difference' in out_log
    state = torch.load(fused, weights_only=True)['state_dict']
    assert not any(k.startswith('backbone.') and '.bn.' in k for k in state)
    fused_out = tmp_path / ('fused.pkl' if task == 'det' else 'fused_png')
    log = run([sys.executable, 'tools/test.py', str(cfg), str(fused),
               '--work-dir', str(tmp_path / 'test_fused'), '--out',
               str(fused_out)], tmp_path / 'test_fused.log')
    assert 'switched to its deploy form to load it' in log
    assert_same_predictions(task, original, predictions(task, fused_out))
    metric = TASKS[task]['metrics'][0]
    assert metrics(tmp_path / 'test_fused')[metric] == \
        pytest.approx(result[metric], abs=1e-3)

    # The fast path on the original checkpoint: fused in memory, backbone
    # and neck in channels_last.
    fast_out = tmp_path / ('fast.pkl' if task == 'det' else 'fast_png')
    run([sys.executable, 'tools/test.py', str(cfg), str(ckpt), '--work-dir',
         str(tmp_path / 'test_fast'), '--out', str(fast_out),
         '--channels-last'], tmp_path / 'test_fast.log')
    assert_same_predictions(task, original, predictions(task, fast_out))
    assert metrics(tmp_path / 'test_fast')[metric] == \
        pytest.approx(result[metric], abs=1e-3)

    images = sorted(str(p) for p in (demo_data / task).rglob('*.jpg')
                    if p.parent.name in ('val', 'validation'))
    assert len(images) == 2
    check_inferencers(task, cfg, ckpt, fused, images)


def test_resume_from_a_checkpoint(tiny_config, tmp_path):
    """--resume reads MMEngine's own checkpoint (message hub, optimizer) with
    torch.load(weights_only=True), PyTorch's default."""
    import mmrepvit  # noqa: F401  (allow-lists MMEngine's checkpoint types)
    cfg = tiny_config('seg')
    work = tmp_path / 'work'
    run([sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(work)],
        tmp_path / 'train.log')
    # read as mmrepvit reads checkpoints: weights_only=True where PyTorch
    # can allow-list MMEngine's types (>= 2.4), a restricted unpickler
    # before
    from mmrepvit.utils.compat import safe_load_kwargs
    assert torch.load(work / 'iter_2.pth', **safe_load_kwargs())['meta']
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
def test_dist_train_and_test_two_gloo_processes(task, tiny_config,
                                                tmp_path):
    cfg = tiny_config(task)
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
    # Test its fused form: every rank recognises the fused checkpoint.
    from mmrepvit.apis import fuse_checkpoint
    fused = tmp_path / 'fused.pth'
    fuse_checkpoint(str(cfg), str(ckpt), str(fused))
    env['PORT'] = str(free_port())
    log = run(['bash', 'tools/dist_test.sh', str(cfg), str(fused), '2',
               '--work-dir', str(tmp_path / 'test')], tmp_path / 'dtest.log',
              env=env)
    assert 'GPU number: 2' in log
    assert 'switched to its deploy form to load it' in log
    for key in TASKS[task]['metrics']:
        assert key in metrics(tmp_path / 'test')


def start_node(args, node_rank, port, log):
    """One torchrun 'node' of a 2-node job on this machine."""
    env = dict(os.environ, NNODES='2', NODE_RANK=str(node_rank),
               PORT=str(port))
    return subprocess.Popen(['bash'] + args, cwd=REPO, env=env,
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT)


def test_two_node_local_run(tiny_config, tmp_path):
    """Two torchrun nodes of one process each (NNODES=2, NODE_RANK=0|1 on
    one machine): train, then test; every node exits 0."""
    cfg = tiny_config('seg')
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


def test_killed_rank_ends_every_node(tiny_config, tmp_path):
    """SIGKILL one rank of a 2-node training run: both nodes end, with a
    non-zero status, within a bounded time (no node waits for the dead
    rank)."""
    cfg = tiny_config('seg')
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
    # Each node says why: the killed rank's agent names the signal, the
    # surviving rank names the lost peer.
    assert 'Signal 9 (SIGKILL) received by PID' in logs[1].read_text()
    # (gloo says 'closed' when the dead peer's socket sent FIN, 'reset'
    # when it sent RST: which one depends on the moment of the kill)
    assert re.search(r'Connection (closed|reset) by peer',
                     logs[0].read_text())
    # Measured here: both end within seconds; 180 s is the hard bound.
    print(f'both nodes ended {elapsed:.1f} s after the kill, codes {codes}')


@pytest.mark.parametrize('when', ['running', 'starting'])
@pytest.mark.parametrize('signum',
                         [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=['SIGINT', 'SIGTERM', 'SIGHUP'])
def test_stopping_the_demo_stops_its_tool(signum, when, tmp_path):
    """`kill PID` of tools/demo.py (not its process group) stops the tool it
    is running too, and the demo exits 128 + signal number, saying so.
    The tool here stands in for the data generator and never ends by
    itself. 'starting': the signal arrives inside Popen, after the tool's
    process exists and before Popen returns it (sent by a Popen wrapper)."""
    pid_file = tmp_path / 'tool.pid'
    started = tmp_path / 'popen.pid'   # 'starting': written by the wrapper
    tool = tmp_path / 'tool.py'
    tool.write_text('import os, sys, time\n'
                    f'open({str(pid_file)!r}, "w").write(str(os.getpid()))\n'
                    'time.sleep(300)\n')
    driver = (
        'import importlib.util, os, subprocess, sys\n'
        'spec = importlib.util.spec_from_file_location('
        f'"demo", {str(REPO / "tools" / "demo.py")!r})\n'
        'demo = importlib.util.module_from_spec(spec)\n'
        'spec.loader.exec_module(demo)\n'
        f'demo.TASKS["det"]["generator"] = {str(tool)!r}\n'
        f'sys.argv = ["demo.py", "det", "--work-dir", '
        f'{str(tmp_path / "work")!r}]\n')
    if when == 'starting':
        driver += (
            'class Popen(subprocess.Popen):\n'
            '    def __init__(self, *args, **kwargs):\n'
            '        super().__init__(*args, **kwargs)\n'
            f'        open({str(started)!r}, "w").write(str(self.pid))\n'
            f'        os.kill(os.getpid(), {int(signum)})\n'
            'demo.subprocess.Popen = Popen\n')
    driver += 'demo.main()\n'
    proc = subprocess.Popen([sys.executable, '-c', driver], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    tool_pid = ended = out = err = None
    try:
        if when == 'running':
            deadline = time.monotonic() + 120
            while not (pid_file.exists() and pid_file.read_text()):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, 'the tool never started'
                time.sleep(0.1)
            tool_pid = int(pid_file.read_text())
            os.kill(proc.pid, signum)
        # An orphaned tool would keep the pipes open: this times out.
        out, err = proc.communicate(timeout=60)
        ended = True
    finally:
        if proc.poll() is None:
            proc.kill()
        if when == 'starting' and started.exists():
            tool_pid = int(started.read_text())
        if tool_pid and not ended:     # the orphan, left by a failure
            try:
                os.kill(tool_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 128 + signum, (out, err)
    assert f'Stopped by {signal.Signals(signum).name}' in err
    assert tool_pid, err
    with pytest.raises(ProcessLookupError):   # reaped by the demo: gone
        os.kill(tool_pid, 0)


# ------------------------------------------------------------ tools/test.py
def random_checkpoint(cfg, path):
    """A checkpoint of the config's model with its initial (random) weights:
    enough to run tools/test.py without training first."""
    from mmrepvit.apis import build_model
    torch.save({'state_dict': build_model(str(cfg)).state_dict()}, path)
    return path


@pytest.mark.parametrize('tool', ['test', 'train'])
def test_tools_refuse_a_checkpoint_of_another_model(tool, tiny_config,
                                                    tmp_path):
    """tools/test.py CONFIG CKPT with the segmentor's checkpoint given to the
    detector's config: an error naming the problem, not an evaluation of
    random weights that exits 0. tools/train.py with a load_from that fits
    no weight of the model: the same, before the first iteration."""
    det = tiny_config('det')
    if tool == 'test':
        ckpt = random_checkpoint(tiny_config('seg'), tmp_path / 'seg.pth')
        args = [str(ckpt)]
    else:
        ckpt = tmp_path / 'unrelated.pth'
        torch.save({'state_dict': {'foo': torch.zeros(2)}}, ckpt)
        args = ['--cfg-options', f'load_from={ckpt}']
    log = tmp_path / f'{tool}.log'
    with open(log, 'w') as f:
        proc = subprocess.run(
            [sys.executable, f'tools/{tool}.py', str(det), *args,
             '--work-dir', str(tmp_path / 'work')], cwd=REPO, stdout=f,
            stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert proc.returncode != 0, text[-3000:]
    assert (f"ValueError: The checkpoint '{ckpt}' does not fit the model of "
            f"this config: ") in text, text[-3000:]
    if tool == 'test':
        assert 'not in the checkpoint (e.g. rpn_head.' in text
    else:
        assert 'the checkpoint holds 1 tensors the model does not have ' \
            '(e.g. foo)' in text
    assert 'Iter(' not in text


def test_resuming_from_weights_only_is_refused(tiny_config, tmp_path):
    """tools/train.py --resume PATH with a checkpoint that holds weights
    only (released, fused, a state dict): a message saying to use
    load_from, where MMEngine fails with KeyError: 'message_hub'."""
    ckpt = random_checkpoint(tiny_config('seg'), tmp_path / 'weights.pth')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', str(tiny_config('seg')),
         '--work-dir', str(tmp_path / 'work'), '--resume', str(ckpt)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert (f"ValueError: Cannot resume from '{ckpt}': it holds weights "
            f"only") in text, text[-3000:]
    assert f'--cfg-options load_from={ckpt}' in text
    assert 'KeyError' not in text and 'Iter(' not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp runs there')
@pytest.mark.parametrize('args,message', [
    # MMEngine's AmpOptimWrapper asserts a GPU once everything is built
    (['--amp'], "--amp trains with MMEngine's AmpOptimWrapper, which runs "
     'on a GPU (CUDA, NPU, MLU or MUSA) only'),
    # a config that sets auto_scale_lr=None ended in a TypeError
    (['--auto-scale-lr', '--cfg-options', 'auto_scale_lr=None'],
     '--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=...)'),
])
def test_train_tool_flags_that_cannot_apply(args, message, tmp_path,
                                            monkeypatch):
    # uncaught: a traceback and exit status 1, as from MMEngine, but clear
    with pytest.raises(RuntimeError, match=re.escape(message)):
        run_tool(monkeypatch, 'tools/train.py', REPO / TASKS['seg']['config'],
                 '--work-dir', tmp_path / 'work', *args)


def test_test_tool_adds_its_hooks_to_custom_hooks_none(tiny_config,
                                                       tmp_path):
    """A config may set custom_hooks=None (MMEngine accepts it): tools/test.py
    still adds its checkpoint refusal, which then refuses as above."""
    det = tiny_config('det')
    ckpt = random_checkpoint(tiny_config('seg'), tmp_path / 'seg.pth')
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', str(det), str(ckpt), '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', 'custom_hooks=None'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert (f"ValueError: The checkpoint '{ckpt}' does not fit the model of "
            f"this config: ") in text, text[-3000:]


def demo_config(task, **changes):
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / TASKS[task]['config']))
    cfg.merge_from_dict(changes)
    return cfg


BOX_ONLY = {'model.roi_head.mask_head': None,
            'model.roi_head.mask_roi_extractor': None}


def test_tta_rewrites_a_seg_config():
    """MMSegmentation's --tta: the config's tta_pipeline (inherited from
    mmseg's ADE20K base: 6 scales x flip) and tta_model around the model."""
    use_tta = import_tool('tools/test.py').use_tta
    cfg = use_tta(demo_config('seg'))
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.type == 'EncoderDecoder'
    assert cfg.model.module.backbone.type == 'RepViT'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline == cfg.tta_pipeline
    resizes, flips = pipeline[1].transforms[:2]
    assert pipeline[1].type == 'TestTimeAug'
    assert len(resizes) == 6 and [f.prob for f in flips] == [0., 1.]


def test_tta_reaches_every_dataset_of_a_concatenation():
    """The TTA pipeline goes to the datasets that hold a pipeline, inside
    wrappers and concatenations, as config_checks finds them."""
    use_tta = import_tool('tools/test.py').use_tta
    cfg = demo_config('seg')
    inner = cfg.test_dataloader.dataset
    cfg.test_dataloader.dataset = dict(type='ConcatDataset', datasets=[
        inner, dict(type='RepeatDataset', times=2, dataset=inner)])
    use_tta(cfg)
    concat = cfg.test_dataloader.dataset
    assert 'pipeline' not in concat
    assert concat.datasets[0].pipeline == cfg.tta_pipeline
    assert concat.datasets[1].dataset.pipeline == cfg.tta_pipeline


@pytest.mark.parametrize('key', ['tta_model', 'tta_pipeline'])
def test_tta_needs_the_seg_config_settings(key):
    """MMSegmentation has no defaults: a missing key is named."""
    use_tta = import_tool('tools/test.py').use_tta
    cfg = demo_config('seg')
    cfg.pop(key)
    with pytest.raises(ValueError, match=f'--tta needs {key} in the config'):
        use_tta(cfg)


def test_tta_gives_det_configs_mmdet_defaults():
    """A detection config without TTA settings gets MMDetection's test.py
    defaults, with a warning each: DetTTAModel (NMS IoU 0.5, 100 boxes) and
    the test pipeline packed after a flip and no flip."""
    use_tta = import_tool('tools/test.py').use_tta
    cfg = demo_config('det', **BOX_ONLY)
    test_pipeline = list(cfg.test_dataloader.dataset.pipeline)
    with pytest.warns(UserWarning) as record:
        use_tta(cfg)
    assert [str(w.message).split(';')[0] for w in record] == [
        '--tta: the config has no tta_model',
        '--tta: the config has no tta_pipeline']
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.tta_cfg == dict(
        nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
    assert cfg.model.module.type == 'MaskRCNN'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[:-1] == test_pipeline[:-1]
    flips, (pack, ) = pipeline[-1].transforms
    assert pipeline[-1].type == 'TestTimeAug'
    assert [f['prob'] for f in flips] == [1., 0.]
    assert pack['type'] == 'PackDetInputs'
    assert {'flip', 'flip_direction'} <= set(pack['meta_keys'])


def test_tta_uses_the_det_config_settings():
    """A detection config's own tta_model / tta_pipeline win, silently."""
    import warnings

    use_tta = import_tool('tools/test.py').use_tta
    tta_model = dict(type='DetTTAModel', tta_cfg=dict(
        nms=dict(type='nms', iou_threshold=0.6), max_per_img=50))
    tta_pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='TestTimeAug', transforms=[])]
    cfg = demo_config('det', tta_model=tta_model, tta_pipeline=tta_pipeline,
                      **BOX_ONLY)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        use_tta(cfg)
    assert cfg.model.tta_cfg.max_per_img == 50
    assert cfg.test_dataloader.dataset.pipeline == tta_pipeline


def test_tta_settings_without_a_type_change_the_det_default():
    """--cfg-options tta_model.tta_cfg.max_per_img=50 on a config without
    tta_model: MMDetection's default with that change (it was a model
    config without a type), and --cfg-options does not call it unused."""
    from mmrepvit.utils.config import warn_ineffective_options
    use_tta = import_tool('tools/test.py').use_tta
    cfg = demo_config('det', **BOX_ONLY)
    option = {'tta_model.tta_cfg.max_per_img': 50}
    assert warn_ineffective_options(cfg, option) == []
    cfg.merge_from_dict(option)
    with pytest.warns(UserWarning, match='--tta: the config has no '
                      'tta_model type; its settings change MMDetection'):
        use_tta(cfg)
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.tta_cfg == dict(
        nms=dict(type='nms', iou_threshold=0.5), max_per_img=50)
    # and the Mask R-CNN refusal still applies to it
    cfg = demo_config('det')
    cfg.merge_from_dict(option)
    with pytest.raises(ValueError, match=r'model\.roi_head\.mask_head'):
        use_tta(cfg)


def test_tta_refuses_instance_segmentation():
    """MMDetection's DetTTAModel asserts on masks at the first image; the
    Mask R-CNN configs are refused before anything is built."""
    use_tta = import_tool('tools/test.py').use_tta
    with pytest.raises(ValueError, match=r'model\.roi_head\.mask_head'):
        use_tta(demo_config('det'))


def build_tta_model():
    from mmengine.registry import MODELS, init_default_scope

    use_tta = import_tool('tools/test.py').use_tta
    cfg = use_tta(demo_config('seg'))
    init_default_scope('mmseg')
    import mmseg.models  # noqa: F401  (registers the segmentors)
    return MODELS.build(cfg.model)


def test_fuse_hook_reaches_the_repvit_inside_a_tta_model():
    """--tta --fuse: FuseModelHook gets the SegTTAModel, whose segmentor is
    its .module; every RepViT inside is fused."""
    from mmrepvit import FuseModelHook, RepViT
    model = build_tta_model()
    FuseModelHook().before_test(SimpleNamespace(model=model))
    backbones = [m for m in model.modules() if isinstance(m, RepViT)]
    assert len(backbones) == 1 and backbones[0].deploy
    assert not model.module.training


def test_channels_last_hook_reaches_the_segmentor_inside_a_tta_model():
    """--tta --channels-last: the backbone and neck of the segmentor inside
    the SegTTAModel run in channels_last."""
    from mmrepvit import FuseModelHook
    model = build_tta_model()
    FuseModelHook(channels_last=True).before_test(SimpleNamespace(
        model=model))
    weight = next(model.module.backbone.parameters())
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_tta_seg_demo(tiny_config, tmp_path):
    """tools/test.py --tta --fuse on the seg demo: SegTTAModel over the
    config's multi-scale + flip pipeline, evaluated with mIoU."""
    cfg = tiny_config('seg')
    ckpt = random_checkpoint(cfg, tmp_path / 'random.pth')
    work = tmp_path / 'test'
    # One image: 12 augmented passes.
    log = run([sys.executable, 'tools/test.py', str(cfg), str(ckpt),
               '--work-dir', str(work), '--tta', '--fuse', '--cfg-options',
               'test_dataloader.dataset.indices=1'], tmp_path / 'tta.log')
    assert 'Iter(test) [1/1]' in log
    assert set(TASKS['seg']['metrics']) <= set(metrics(work))
    from mmengine.config import Config
    used = Config.fromfile(str(work / cfg.name))    # what the runner ran
    assert used.model.type == 'SegTTAModel'
    assert used.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_tta_det_demo_box_only(tiny_config, demo_data, tmp_path):
    """tools/test.py --tta on a box-only detector config without TTA
    settings: MMDetection's defaults, with warnings; a relative --show-dir
    goes under WORK_DIR/TIMESTAMP/, as in MMDetection."""
    cfg = tiny_config('det')
    with open(cfg, 'a') as f:
        f.write(f"""
model = dict(roi_head=dict(mask_head=None, mask_roi_extractor=None))
test_evaluator = dict(
    ann_file='{demo_data}/det/annotations/instances_val.json', metric='bbox')
""")
    ckpt = random_checkpoint(cfg, tmp_path / 'random.pth')
    work = tmp_path / 'test'
    log = run([sys.executable, str(REPO / 'tools/test.py'), str(cfg),
               str(ckpt), '--work-dir', str(work), '--tta', '--show-dir',
               'vis', '--cfg-options', 'test_dataloader.dataset.indices=1'],
              tmp_path / 'tta.log', cwd=tmp_path)
    assert 'the config has no tta_model' in log
    assert 'the config has no tta_pipeline' in log
    assert 'coco/bbox_mAP' in metrics(work)
    from mmengine.config import Config
    assert Config.fromfile(str(work / cfg.name)).model.type == 'DetTTAModel'
    assert len(list(work.glob('*/vis/*.jpg'))) == 1
    assert not (tmp_path / 'vis').exists()


def test_seg_show_dir_without_the_training_set(demo_data, tmp_path):
    """Testing with --show-dir needs only the test set (mmseg 1.2's
    visualization hook builds the training dataloader); a relative
    --show-dir is relative to the current directory, as in MMSegmentation."""
    data = tmp_path / 'val_only'
    for part in ('images', 'annotations'):
        shutil.copytree(demo_data / 'seg' / part / 'validation',
                        data / part / 'validation')
    cfg = tmp_path / 'val_only.py'
    cfg.write_text(f"""_base_ = ['{REPO / TASKS['seg']['config']}']
train_dataloader = dict(dataset=dict(data_root='{tmp_path}/no_training_set'))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root='{data}'))
""")
    ckpt = random_checkpoint(cfg, tmp_path / 'random.pth')
    work = tmp_path / 'test'
    run([sys.executable, str(REPO / 'tools/test.py'), str(cfg), str(ckpt),
         '--work-dir', str(work), '--show-dir', 'vis'], tmp_path / 'test.log',
        cwd=tmp_path)
    assert 'mIoU' in metrics(work)
    drawn = sorted(p.name for p in (tmp_path / 'vis').rglob('*.png'))
    assert drawn == ['test_demo_000001.jpg_0.png',
                     'test_demo_000002.jpg_0.png']
    assert (tmp_path / 'vis/vis_data/vis_image').is_dir()


def test_show_dir_help_says_where_each_library_puts_images(monkeypatch,
                                                           capsys):
    with pytest.raises(SystemExit) as done:
        run_tool(monkeypatch, 'tools/test.py', '--help')
    assert done.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert 'relative to WORK_DIR/TIMESTAMP/ for detection' in text
    assert 'to the current directory for segmentation' in text
    assert '--tta' in text


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_malformed_cfg_options_is_a_usage_error(tool, monkeypatch, capsys):
    """'KEY VALUE' (no '=') is reported by argparse, not as a traceback."""
    config = str(REPO / TASKS['seg']['config'])
    args = [config] + (['missing.pth'] if tool == 'test.py' else [])
    with pytest.raises(SystemExit) as error:
        run_tool(monkeypatch, f'tools/{tool}', *args, '--cfg-options',
                 'model.backbone.arch', 'm1_1')
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('usage: ')
    assert ("error: --cfg-options expects KEY=VALUE pairs, got "
            "'model.backbone.arch'") in err
