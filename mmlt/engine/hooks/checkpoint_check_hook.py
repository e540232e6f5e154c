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
from mmengine.runner import find_latest_checkpoint

from mmlt.registry import HOOKS


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


def _head_of(config_text: Optional[str]) -> Optional[str]:
    """``model.head.type`` (or ``roi_head.bbox_head.type``) of a config."""
    if not config_text:
        return None
    try:
        from mmengine.config import Config
        model = Config.fromstring(config_text, '.py').get('model', {})
    except Exception:  # a config that no longer parses: nothing to report
        return None
    head = model.get('head') or model.get('roi_head', {}).get('bbox_head')
    return head.get('type') if isinstance(head, dict) else None


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
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict', checkpoint)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        diff = compare_state_dicts(model, state_dict)
        if not any(diff.values()):
            return
        resuming = bool(getattr(runner, '_resume', False))
        path = runner._load_from
        if resuming and path is None and runner.work_dir:
            path = find_latest_checkpoint(runner.work_dir)
        config = getattr(runner.cfg, 'filename', None) or 'the config'
        lines = [
            f'checkpoint {path or "(given)"} does not fit the model of '
            f'{osp.basename(str(config))}:'
        ]
        theirs = _head_of(checkpoint.get('meta', {}).get('cfg'))
        ours = _head_of(runner.cfg.pretty_text) if hasattr(
            runner.cfg, 'pretty_text') else None
        if theirs or ours:
            lines.append(f'  head: checkpoint {theirs}, config {ours}')
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
