# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""RefuseUnfitCheckpointHook, which tools/test.py, tools/deploy/test_onnx.py
and tools/train.py (with load_from or --resume) add: the loads it refuses,
run as MMEngine's Runner loads. tests/test_tools/test_demo.py runs the
tools with it end to end."""
from types import SimpleNamespace

import pytest
import torch

from helpers import REPO

SEG_DEMO = REPO / 'configs/seg/repvit_m0_6_fpn_demo.py'


def load_checked(model, state, whole):
    """Load STATE into MODEL as MMEngine's Runner does, with the check
    tools/test.py (whole) and tools/train.py's load_from (not whole) add."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    from mmrepvit.engine import RefuseUnfitCheckpointHook
    hooks = (dict(model._load_state_dict_pre_hooks),
             dict(model._load_state_dict_post_hooks))
    RefuseUnfitCheckpointHook('x.pth', whole).before_run(
        SimpleNamespace(model=model))
    try:
        _load_checkpoint_to_model(model, {'state_dict': state})
    finally:   # one-shot: its hooks are gone after the load, failed or not
        assert (dict(model._load_state_dict_pre_hooks),
                dict(model._load_state_dict_post_hooks)) == hooks


def test_a_checkpoint_that_leaves_weights_random_is_refused():
    """MMEngine only warns when a checkpoint lacks weights of the model (or
    holds them in another shape) and goes on with random ones; testing (and
    resuming) refuses that, fine-tuning (load_from) refuses a checkpoint
    that fits no weight at all."""
    from mmrepvit.apis import build_model, fuse_model
    config = str(SEG_DEMO)
    trained = build_model(config).state_dict()

    def loaded(state, whole=True):
        model = build_model(config)
        load_checked(model, state, whole)
        return model

    model = loaded(trained)          # the whole model: loads, as before
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    fused = fuse_model(build_model(config)).state_dict()
    assert loaded(fused).backbone.deploy  # fused: switches, fits

    weights = [k for k in trained if not k.endswith('num_batches_tracked')]
    backbone = {k: v for k, v in trained.items() if k.startswith('backbone.')}
    heads = len([k for k in weights if not k.startswith('backbone.')])
    with pytest.raises(ValueError) as error:
        loaded(backbone)
    assert str(error.value).startswith(
        f"The checkpoint 'x.pth' does not fit the model of this config: "
        f"{heads} of its {len(weights)} weights would keep their random "
        f"initial values: {heads} not in the checkpoint (e.g. neck.")
    assert 'model.backbone.init_cfg' in str(error.value)
    loaded(backbone, whole=False)    # fine-tuning from part of a model: ok

    classes = dict(trained)          # a checkpoint with another class count
    classes['decode_head.conv_seg.weight'] = torch.zeros(3, 128, 1, 1)
    with pytest.raises(ValueError, match=(
            r': 1 of its \d+ weights would keep their random initial values'
            r': 1 of another shape \(e.g. decode_head.conv_seg.weight: '
            r'copying a param with shape torch.Size\(\[3, 128, 1, 1\]\) ')):
        loaded(classes)
    loaded(classes, whole=False)

    unrelated = {'foo': torch.zeros(2)}
    for whole in (True, False):
        with pytest.raises(ValueError, match=(
                f'{len(weights)} of its {len(weights)} weights would keep '
                f'their random .* the checkpoint holds 1 tensors the model '
                f'does not have \\(e.g. foo\\)')):
            loaded(unrelated, whole)


def test_a_checkpoint_with_a_model_entry_is_named():
    """The official ImageNet releases hold {'model': state dict}: given to
    tools/test.py (or as load_from) MMEngine would load none of it, and the
    refusal says where such a checkpoint goes, not '1 tensors ... (e.g.
    model)'."""
    from mmrepvit import RepViT
    from mmrepvit.engine import RefuseUnfitCheckpointHook
    official = {'model': RepViT('m0_6').state_dict()}
    for whole in (True, False):
        with pytest.raises(ValueError, match=(
                r"^The checkpoint 'x.pth' holds its tensors under \"model\" "
                r".*model.backbone.init_cfg=dict\(type='Pretrained'")):
            RefuseUnfitCheckpointHook('x.pth', whole).after_load_checkpoint(
                None, official)
    # MMEngine reads "state_dict" where there is one: not refused here
    RefuseUnfitCheckpointHook('x.pth').after_load_checkpoint(
        None, dict(official, state_dict={}))
