"""A cosine classifier: ``scale * cos(x, w_c)``."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CosineClassifier(nn.Module):
    """``scale * cos(x, w_c)``: a linear classifier on unit vectors.

    Args:
        in_channels (int): Input feature dimension.
        num_classes (int): Number of classes.
        scale (float): The logit scale s (30 in ProCo/BCL on ImageNet-LT).

    Shape:
        - input: ``(N, in_channels)``; output: ``(N, num_classes)``.
    """

    def __init__(self, in_channels: int, num_classes: int, scale: float = 30.):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=1) @ F.normalize(
            self.weight, dim=1).t()
