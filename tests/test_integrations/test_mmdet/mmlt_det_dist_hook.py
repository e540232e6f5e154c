"""A test-only hook (imported by the 2-process run through custom_imports):
count the foreground RoIs each rank gives the contrastive loss (rows of
weight > 0) and save
each rank's contrastive-loss state after training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SaveRankStateHook(Hook):
    priority = 'LOWEST'

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        bbox_head = model.roi_head.bbox_head
        original = bbox_head.loss_contrast
        self.num_foreground = 0

        def counting_loss_contrast(features, labels, weights=None,
                                   *args):
            # ProCo takes every RoI, weight 0 on those it must not see
            self.num_foreground += int(labels.numel()) if weights is None \
                else int((weights > 0).sum())
            return original(features, labels, weights, *args)

        bbox_head.loss_contrast = counting_loss_contrast

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        state = {
            key: value.clone()
            for key, value in model.state_dict().items()
            if '.contrast_branch.loss.' in key or '.loss_cls.' in key
        }
        torch.save(
            dict(state=state, num_foreground=self.num_foreground),
            osp.join(runner.work_dir, f'rank{get_rank()}.pth'))
