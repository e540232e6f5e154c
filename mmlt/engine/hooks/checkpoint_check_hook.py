"""Refuse (resume) or flag (test) a checkpoint written for another model.

Without this, resuming the CE baseline's checkpoint with the ProCo config
fails deep inside torch ("loaded state dict contains a parameter group that
doesn't match the size of optimizer's group"), naming neither the checkpoint
nor the config, and testing with it silently leaves layers at their initial
values.
"""
import os.path as osp
import re
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmlt.registry import HOOKS
from .utils import checkpoint_to_load, is_resuming

#: ``checkpoint['meta']`` key holding the model's head type, a plain string.
HEAD_KEY = 'mmlt_head'


def _summary(keys: List[str], limit: int = 6) -> str:
    """Keys grouped by their first two components, e.g. ``head.contrast_branch
    (12 keys)``."""
    groups = {}
    for key in keys:
        group = '.'.join(key.split('.')[:2])
        groups[group] = groups.get(group, 0) + 1
    parts = [f'{group} ({n} keys)' for group, n in sorted(groups.items())]
    more = len(parts) - limit
    return ', '.join(parts[:limit]) + (f' and {more} more' if more > 0 else '')


def head_type(model_cfg) -> Optional[str]:
    """``type`` of a model config's head (detectors: ``roi_head.bbox_head``).

    Reads an already parsed config (a dict), never config text.
    """
    if not isinstance(model_cfg, dict):
        return None
    head = model_cfg.get('head')
    if head is None and isinstance(model_cfg.get('roi_head'), dict):
        head = model_cfg['roi_head'].get('bbox_head')
    name = head.get('type') if isinstance(head, dict) else None
    return name if isinstance(name, str) else None


def _stored_head(checkpoint) -> Optional[str]:
    """The head type a checkpoint recorded when it was saved
    (``meta['mmlt_head']``); None for other checkpoints or any other
    value."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    head = meta.get(HEAD_KEY) if isinstance(meta, dict) else None
    if isinstance(head, str) and head.isprintable() and len(head) <= 200:
        return head
    return None


def compare_state_dicts(model: torch.nn.Module, state_dict: dict) -> dict:
    """Load ``state_dict`` into ``model`` non-strictly; report what differs.

    The runner loads the same weights right after this hook, so loading
    here costs no extra memory (no copy of the model) and lets modules map
    older layouts (mmlt heads written before :class:`mmlt.ContrastiveBranch`)
    exactly as the real load does.

    Returns:
        dict: ``missing``, ``unexpected`` and ``mismatched`` (shape) keys.
    """
    state_dict = {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in state_dict.items()
    }
    mismatched = []
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:
        # Size mismatches (modules that resize, like the losses' priors,
        # already took the checkpoint's size); load the rest to list keys.
        mismatched = re.findall(r'size mismatch for ([^:]+): (.*)',
                                str(error))
        bad = {key for key, _ in mismatched}
        result = model.load_state_dict(
            {k: v
             for k, v in state_dict.items() if k not in bad},
            strict=False)
        mismatched = [f'{key}: {why.strip()}' for key, why in mismatched]
    missing = [k for k in result.missing_keys
               if not any(m.startswith(k + ':') for m in mismatched)]
    return dict(
        missing=missing,
        unexpected=list(result.unexpected_keys),
        mismatched=mismatched)


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Compare a checkpoint with the model before anything is loaded.

    On ``--resume`` a checkpoint whose weights do not fit the model is an
    error, raised before the optimizer state is touched; when loading
    weights for testing or fine-tuning (``load_from``) it is a warning. The
    message names the checkpoint, the config, both heads and the keys that
    differ.

    The checkpoint's head is the plain string that this hook stores in
    ``meta['mmlt_head']`` at save time; checkpoints without it are compared
    by keys and shapes alone. Nothing from the checkpoint is executed.
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        head = head_type(runner.cfg.get('model'))
        if head is not None:
            checkpoint.setdefault('meta', {})[HEAD_KEY] = head

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not isinstance(checkpoint, dict):
            return  # not a checkpoint; MMEngine's load reports it
        state_dict = checkpoint.get('state_dict', checkpoint)
        if not isinstance(state_dict, dict):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        diff = compare_state_dicts(model, state_dict)
        if not any(diff.values()):
            return
        resuming = is_resuming(runner)
        path = checkpoint_to_load(runner)
        config = getattr(runner.cfg, 'filename', None) or 'the config'
        lines = [
            f'checkpoint {path or "(given)"} does not fit the model of '
            f'{osp.basename(str(config))}:'
        ]
        theirs = _stored_head(checkpoint)
        ours = head_type(runner.cfg.get('model'))
        if theirs or ours:
            lines.append(f'  head: checkpoint {theirs or "(not recorded)"}, '
                         f'config {ours}')
        if diff['mismatched']:
            lines.append('  different shapes: ' +
                         '; '.join(diff['mismatched'][:4]) +
                         (' ...' if len(diff['mismatched']) > 4 else ''))
        if diff['missing']:
            lines.append('  missing in the checkpoint: ' +
                         _summary(diff['missing']))
        if diff['unexpected']:
            lines.append('  only in the checkpoint: ' +
                         _summary(diff['unexpected']))
        if resuming:
            lines.append('  Resume with the config that wrote the '
                         'checkpoint, or start a new work dir and pass the '
                         'checkpoint as load_from to reuse its weights.')
            raise RuntimeError('\n'.join(lines))
        lines.append('  The layers listed keep their initial values.')
        runner.logger.warning('\n'.join(lines))
