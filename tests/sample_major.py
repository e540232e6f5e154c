"""The contrastive-loss tests build features sample-major, ``(N, V, p)``,
as their slow reference loops index them; mmlt's losses take them
view-major, ``(V, N, p)``. These subclasses transpose on the way in (a
transposed view keeps gradients and gradcheck)."""
from mmlt.models.losses import BCLLoss as _BCLLoss
from mmlt.models.losses import SupConLoss as _SupConLoss


def view_major(features):
    return features.transpose(0, 1) if features.dim() == 3 else features


class SampleMajorSupConLoss(_SupConLoss):

    def forward(self, features, labels, *args, **kwargs):
        return super().forward(view_major(features), labels, *args, **kwargs)


class SampleMajorBCLLoss(_BCLLoss):

    def forward(self, features, labels, *args, **kwargs):
        return super().forward(view_major(features), labels, *args, **kwargs)
