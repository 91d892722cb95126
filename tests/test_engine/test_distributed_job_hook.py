# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""DistributedJobHook, which the tools add with --launcher: rank 0 alone
writes the test metrics file, and a finished gloo process ends with status
0 without finalising the interpreter (mmrepvit/utils/compat.py). The
two-process runs of tests/test_tools/test_demo.py run it end to end."""
import argparse
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import mmengine.dist
import torch
from mmengine.hooks import LoggerHook

from helpers import REPO
from mmrepvit.engine import DistributedJobHook
from mmrepvit.utils.config import tool_config

SEG_DEMO = REPO / 'configs/seg/repvit_m0_6_fpn_demo.py'


def args(launcher):
    return argparse.Namespace(config=str(SEG_DEMO), launcher=launcher,
                              local_rank=0, work_dir=None, cfg_options=None)


def test_tools_add_the_hook_to_distributed_runs_only(monkeypatch):
    # (CUDA "available": no gloo process group is started here)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    hooks = tool_config(args('pytorch')).custom_hooks
    assert hooks[-1] == dict(type='DistributedJobHook')
    assert len(hooks) == len(tool_config(args('none')).get(
        'custom_hooks', [])) + 1


def test_only_rank_0_writes_the_test_metrics_file(monkeypatch):
    logger_hook = LoggerHook()
    runner = SimpleNamespace(hooks=[logger_hook])
    DistributedJobHook().before_run(runner)       # rank 0: as MMEngine's
    assert 'after_test_epoch' not in vars(logger_hook)
    monkeypatch.setattr(mmengine.dist, 'is_main_process', lambda: False)
    DistributedJobHook().before_run(runner)       # other ranks: log only
    assert vars(logger_hook)['after_test_epoch'].__name__ == 'log_only'


def test_without_a_process_group_the_job_goes_on():
    DistributedJobHook().after_run(runner=None)   # returns: no exit


def test_a_finished_gloo_job_exits_0_after_atexit(tmp_path):
    # one gloo rank: ends in after_run with status 0, atexit handlers run,
    # nothing after the hook runs
    script = textwrap.dedent(f'''
        import atexit
        import torch.distributed as dist
        from mmrepvit.engine import DistributedJobHook
        dist.init_process_group('gloo', init_method='file://{tmp_path}/pg',
                                rank=0, world_size=1)
        atexit.register(print, 'atexit ran', flush=True)
        DistributedJobHook().after_run(runner=None)
        print('not reached')
    ''')
    done = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['atexit', 'ran']
