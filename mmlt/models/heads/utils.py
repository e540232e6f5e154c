"""Small helpers of the classification heads."""
from typing import Sequence, Union

import torch


def pooled_features(feats: Union[torch.Tensor, Sequence[torch.Tensor]],
                    in_channels: int) -> torch.Tensor:
    """The last stage's globally pooled features of a head's input.

    Args:
        feats (Tensor | Sequence[Tensor]): The neck's output (a tuple of
            stages, the last one used) or one tensor.
        in_channels (int): The feature dimension the head expects.

    Shape:
        - output: ``(N, in_channels)``.
    """
    x = feats[-1] if isinstance(feats, (tuple, list)) else feats
    if x.dim() != 2 or x.size(1) != in_channels:
        raise ValueError(
            f'expected pooled features of shape (N, {in_channels}), got '
            f'{tuple(x.shape)}; add a GlobalAveragePooling neck or fix '
            'in_channels')
    return x
