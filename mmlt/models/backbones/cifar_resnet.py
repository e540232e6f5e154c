"""The CIFAR ResNets of He et al. (2016), section 4.2: ResNet-20/32/44/56/110."""
from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmlt.registry import MODELS


class _BasicBlock(nn.Module):

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            # option B of the paper: a 1x1 projection on the shortcut
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity, inplace=True)


@MODELS.register_module()
class CifarResNet(BaseModule):
    """ResNet for 32x32 inputs: 3 stages of (depth-2)/6 basic blocks.

    The backbone of ProCo and BCL on CIFAR-LT ("ResNet-32": 16-32-64
    channels, 0.46M parameters). It is not in MMPretrain, whose
    ``ResNet_CIFAR`` is the ImageNet ResNet with a 3x3 stem.

    Args:
        depth (int): 6n+2, e.g. 20, 32, 44, 56, 110.
        in_channels (int): Input channels. Defaults to 3.
        base_channels (int): Width of the first stage (16 in the paper);
            the stages have 1x, 2x, 4x this width.
        out_indices (Sequence[int]): Stages whose outputs are returned.
        frozen_stages (int): Stages to freeze (no gradients, BatchNorm in
            eval mode), as in MMPretrain's ``ResNet``: -1 none, 0 the stem,
            ``k`` the stem and stages 1..k; 3 freezes the whole backbone
            (the linear probe of two-stage training). Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (running
            statistics frozen) in training. Defaults to False.
        init_cfg (dict, optional): Initialisation config; Kaiming normal
            for convolutions by default.

    Shape:
        - input: ``(N, in_channels, H, W)``
        - output: a tuple with ``(N, 4*base_channels, H/4, W/4)`` for stage 2.
    """

    def __init__(self,
                 depth: int = 32,
                 in_channels: int = 3,
                 base_channels: int = 16,
                 out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg=(dict(type='Kaiming', layer='Conv2d'),
                           dict(type='Constant', val=1,
                                layer=['BatchNorm2d']))):
        if isinstance(init_cfg, tuple):
            init_cfg = list(init_cfg)
        super().__init__(init_cfg=init_cfg or None)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f'depth must be 6n+2 (20, 32, 44, 56, 110), '
                             f'got {depth}')
        if any(i not in (0, 1, 2) for i in out_indices):
            raise ValueError(f'out_indices must be in (0, 1, 2), got '
                             f'{tuple(out_indices)}')
        if frozen_stages not in (-1, 0, 1, 2, 3):
            raise ValueError(f'frozen_stages must be -1 (none), 0 (stem) or '
                             f'1..3 (stem and stages 1..k), got '
                             f'{frozen_stages!r}')
        blocks = (depth - 2) // 6
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        channels = base_channels
        for stage in range(3):
            out_channels = base_channels * 2**stage
            layers = []
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(_BasicBlock(channels, out_channels, stride))
                channels = out_channels
            self.stages.append(nn.Sequential(*layers))
        self.out_channels = channels
        self._freeze_stages()

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.stem
        yield from self.stages[:max(self.frozen_stages, 0)]

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Frozen stages (and every BatchNorm with ``norm_eval``) stay in
        eval mode, so their running statistics never change."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
