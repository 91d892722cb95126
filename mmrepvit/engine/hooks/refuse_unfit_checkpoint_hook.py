# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...apis import unwrap_model


@HOOKS.register_module()
class RefuseUnfitCheckpointHook(Hook):
    """Make the run's load of ``checkpoint`` raise where MMEngine warns.

    MMEngine goes on with random weights where a checkpoint lacks some. The
    check runs once per rank, in the load (after a fused checkpoint has
    switched the backbone to deploy form); the tools add this hook.

    Args:
        checkpoint (str): The checkpoint the runner loads, named in errors.
        whole (bool): Every weight must come from it, in the model's shape
            (testing, resuming); else at least one (``load_from`` to
            fine-tune, a head may be left out). Defaults to ``True``.
        resume (bool): The run resumes from it, so it must hold a training
            state, not weights only. Defaults to ``False``.
    """

    def __init__(self, checkpoint: str, whole: bool = True,
                 resume: bool = False):
        self.checkpoint, self.whole, self.resume = checkpoint, whole, resume

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'state_dict' not in checkpoint and isinstance(
                checkpoint.get('model'), dict):
            # MMEngine reads 'state_dict' or the top level: nothing loads
            raise ValueError(
                f'The checkpoint {self.checkpoint!r} holds its tensors under '
                f'"model" (as the RepViT ImageNet releases): MMEngine reads '
                f'none. A backbone checkpoint goes in model.backbone.init_cfg'
                f"=dict(type='Pretrained', checkpoint=...).")
        meta = checkpoint.get('meta')
        if self.resume and not ('message_hub' in checkpoint and isinstance(
                meta, dict) and 'iter' in meta):
            raise ValueError(
                f'Cannot resume from {self.checkpoint!r}: it holds weights '
                f'only, not a training state. To train from them, drop '
                f'--resume and set --cfg-options load_from={self.checkpoint}.')

    def before_run(self, runner) -> None:
        model = unwrap_model(runner.model)   # what MMEngine loads into
        # (what PyTorch >= 2.5's register_load_state_dict_pre_hook calls)
        self._handles = [
            model._register_load_state_dict_pre_hook(self._keep_errors, True),
            model.register_load_state_dict_post_hook(self._check)]

    def _keep_errors(self, *args) -> None:
        self._errors = args[-1]   # error_msgs, which the load fills

    def _check(self, model, incompatible) -> None:
        """Raise where the load leaves too many weights random."""
        for handle in self._handles:
            handle.remove()
        missing, unexpected = incompatible
        weights = [k for k in model.state_dict()
                   if not k.endswith('num_batches_tracked')]
        missing = [k for k in missing if not k.endswith('num_batches_tracked')]
        # PyTorch: 'size mismatch for KEY: copying a param with shape ...'
        shapes = [e.split('size mismatch for ', 1)[1] for e in self._errors
                  if 'size mismatch for ' in e]
        unfit = len(missing) + len(shapes)
        if not unfit or (not self.whole and unfit < len(weights)):
            return
        fix = ("Use a checkpoint of this config's model (same type, arch and "
               'classes); a RepViT backbone one goes in '
               'model.backbone.init_cfg, for training.' if self.whole else
               'load_from takes a checkpoint of the same model type; a RepViT '
               "backbone one goes in model.backbone.init_cfg=dict(type="
               "'Pretrained', checkpoint=...) (prefix='backbone.' for a "
               'whole-model one).')
        raise ValueError(
            f'The checkpoint {self.checkpoint!r} does not fit the model of '
            f'this config: {unfit} of its {len(weights)} weights would keep '
            f'their random initial values: '
            f'{unfit_weights(missing, shapes, unexpected)}. {fix}')


def unfit_weights(missing, shapes, unexpected) -> str:
    """How a load does not fit, with examples: the model's weights not in
    the checkpoint, those of another shape (PyTorch's ``'KEY: copying a
    param with shape ...'``) and the checkpoint's tensors the model lacks;
    also what ``apis.load_model_weights`` reports."""
    what = [f'{len(missing)} not in the checkpoint (e.g. '
            f'{", ".join(missing[:3])})'] if missing else []
    if shapes:
        what.append(f'{len(shapes)} of another shape (e.g. '
                    f'{shapes[0].rstrip(".")})')
    if unexpected:
        what.append(f'the checkpoint holds {len(unexpected)} tensors the '
                    f'model does not have (e.g. {", ".join(unexpected[:3])})')
    return '; '.join(what)
