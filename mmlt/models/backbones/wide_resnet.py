"""Wide ResNet (Zagoruyko & Komodakis, BMVC 2016), e.g. WRN-28-2 of FixMatch."""
import torch.nn as nn
from mmengine.model import BaseModule

from mmlt.registry import MODELS


class _PreActBlock(nn.Module):
    """BN-act-conv3x3-BN-act-conv3x3 with an identity or 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 bn_momentum: float, negative_slope: float,
                 activate_before_residual: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=bn_momentum)
        self.act1 = nn.LeakyReLU(negative_slope, inplace=True)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.act2 = nn.LeakyReLU(negative_slope, inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride, bias=False)
        # the first block also feeds its shortcut the activated input
        self.activate_before_residual = activate_before_residual

    def forward(self, x):
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        if self.shortcut is None:
            return x + out
        return self.shortcut(pre if self.activate_before_residual else x) + \
            out


@MODELS.register_module()
class WideResNet(BaseModule):
    """WRN-d-k for 32x32 inputs: a 3x3 stem with 16 channels, then 3 groups
    of ``(d - 4) / 6`` pre-activation blocks with ``16k, 32k, 64k`` channels
    (strides 1, 2, 2), and a final BN + activation.

    WRN-28-2 (1.5M parameters, 128 output channels) is the backbone of the
    long-tailed semi-supervised protocols (DARP, DASO, ACR) after FixMatch
    (Sohn et al., NeurIPS 2020), which uses BN momentum 0.001 (PyTorch's
    convention; 0.999 in TensorFlow's) and leaky ReLU with slope 0.1.
    Not in MMPretrain.

    Args:
        depth (int): ``d``, with ``(d - 4) % 6 == 0``. Defaults to 28.
        widen_factor (int): ``k``. Defaults to 2.
        bn_momentum (float): Defaults to 0.001.
        negative_slope (float): Of the leaky ReLU. Defaults to 0.1.
        init_cfg (dict, optional): Defaults to Kaiming-normal convolutions
            (fan-out, leaky ReLU) and unit BN, as FixMatch.

    Shape:
        - input: ``(N, 3, 32, 32)``
        - output: a 1-tuple ``((N, 64k, 8, 8), )`` for a pooling neck.
    """

    def __init__(self,
                 depth: int = 28,
                 widen_factor: int = 2,
                 bn_momentum: float = 0.001,
                 negative_slope: float = 0.1,
                 init_cfg=dict(
                     type='Kaiming',
                     layer='Conv2d',
                     mode='fan_out',
                     nonlinearity='leaky_relu')):
        super().__init__(init_cfg=init_cfg)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(
                f'depth must be 6n + 4 with n >= 1 (e.g. 28), got {depth}')
        if widen_factor < 1:
            raise ValueError(f'widen_factor must be >= 1, got {widen_factor}')
        blocks = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.out_channels = widths[-1]
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        layers, in_channels = [], 16
        for group, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            for i in range(blocks):
                layers.append(
                    _PreActBlock(in_channels, width, stride if i == 0 else 1,
                                 bn_momentum, negative_slope,
                                 activate_before_residual=(group == 0
                                                           and i == 0)))
                in_channels = width
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_channels, momentum=bn_momentum)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x):
        return (self.act(self.bn(self.blocks(self.stem(x)))), )
