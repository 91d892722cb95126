# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Refuse a whole-model checkpoint that would leave weights random: a call
on a built runner (:func:`refuse_unfit_checkpoint`), or the hook a config
lists (:class:`RefuseUnfitCheckpointHook`, what ``tools/test.py`` adds)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...apis import unwrap_model
from ...utils.compat import register_load_state_dict_pre_hook


def refuse_unfit_checkpoint(runner, checkpoint: str,
                            whole: bool = True) -> None:
    """Make the runner's load of ``checkpoint`` (``load_from`` or the resumed
    checkpoint) raise ``ValueError`` where MMEngine would only warn and go on
    with weights the checkpoint did not provide, i.e. with random ones.

    ``whole=True`` (testing, resuming): every weight of the model must come
    from the checkpoint, in the model's shape. ``whole=False`` (``load_from``
    to fine-tune from, where a head may be left out on purpose): at least one
    weight must. The check runs on each rank, as part of the load (a fused
    checkpoint has switched the backbone to its deploy form by then), and
    only once.
    """
    # where MMEngine's load_state_dict loads
    model = unwrap_model(runner.model)
    seen = {}

    def keep_lists(module, state_dict, prefix, local_metadata, strict,
                   missing, unexpected, error_msgs):
        seen.update(missing=missing, unexpected=unexpected,
                    errors=error_msgs)

    def check(module, incompatible):
        for handle in handles:
            handle.remove()
        problem = _unfit(module, seen, whole)
        if problem:
            raise ValueError(f'The checkpoint {checkpoint!r} does not fit '
                             f'the model of this config: {problem}')
    handles = [register_load_state_dict_pre_hook(model, keep_lists),
               model.register_load_state_dict_post_hook(check)]


@HOOKS.register_module()
class RefuseUnfitCheckpointHook(Hook):
    """:func:`refuse_unfit_checkpoint` as a hook (what ``tools/test.py``
    adds): set up before the run, which then loads the checkpoint.

    Args:
        checkpoint (str): The checkpoint the runner loads, named in the
            error.
        whole (bool): Every weight must come from it. Defaults to ``True``.
    """

    def __init__(self, checkpoint: str, whole: bool = True):
        self.checkpoint = checkpoint
        self.whole = whole

    def before_run(self, runner) -> None:
        refuse_unfit_checkpoint(runner, self.checkpoint, self.whole)


def _unfit(model, seen: dict, whole: bool):
    """What ``refuse_unfit_checkpoint`` reports, or None."""
    weights = [k for k in model.state_dict()
               if not k.endswith('num_batches_tracked')]
    missing = [k for k in seen['missing']
               if not k.endswith('num_batches_tracked')]
    # PyTorch: 'size mismatch for KEY: copying a param with shape ...'
    shapes = [e.split('size mismatch for ', 1)[1] for e in seen['errors']
              if 'size mismatch for ' in e]
    unfit = len(missing) + len(shapes)
    if not unfit or (not whole and unfit < len(weights)):
        return None
    what = []
    if missing:
        what.append(f'{len(missing)} not in the checkpoint (e.g. '
                    f'{", ".join(missing[:3])})')
    if shapes:
        what.append(f'{len(shapes)} of another shape (e.g. '
                    f'{shapes[0].rstrip(".")})')
    unexpected = seen['unexpected']
    extra = (f'; the checkpoint holds {len(unexpected)} tensors the model '
             f'does not have (e.g. {", ".join(unexpected[:3])})'
             if unexpected else '')
    if whole:
        fix = ('Test (or resume) with a checkpoint of this config\'s model '
               '(same model type, arch and number of classes); a RepViT '
               'backbone checkpoint goes in model.backbone.init_cfg, for '
               'training.')
    else:
        fix = ('load_from starts training from a checkpoint of the same '
               'model type; a RepViT backbone checkpoint goes in '
               'model.backbone.init_cfg=dict(type=\'Pretrained\', '
               'checkpoint=...) instead (with prefix=\'backbone.\' to take '
               'the backbone of a whole-model checkpoint).')
    return (f'{unfit} of its {len(weights)} weights would keep their random '
            f'initial values: {"; ".join(what)}{extra}. {fix}')
