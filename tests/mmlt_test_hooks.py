"""Hooks that only tests use (imported by test configs via custom_imports)."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class CrashAfterEpoch(Hook):
    """Raise after the given epoch, once its checkpoint is written."""
    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise RuntimeError('simulated crash')


@HOOKS.register_module()
class DumpRankState(Hook):
    """Save every rank's model state_dict to work_dir/rank{r}.pth at the end."""
    priority = 'LOWEST'

    def after_train(self, runner):
        model = runner.model
        model = getattr(model, 'module', model)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}.pth'))
