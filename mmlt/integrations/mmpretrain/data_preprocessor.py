"""Batch several augmented views of each image for one backbone pass."""
import torch
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

from mmlt.registry import MODELS


@MODELS.register_module()
class MultiViewDataPreprocessor(ClsDataPreprocessor):
    """:class:`ClsDataPreprocessor` for multi-view inputs, views stacked.

    With ``MultiView`` in the pipeline (one classification view and two
    SimCLR-style contrastive views in ProCo and BCL), every sample carries a
    list of views. Each view is normalised like a single-view batch and the
    views are concatenated along the batch dimension, view-major::

        inputs = cat([view_0 (B, C, H, W), view_1, ..., view_{V-1}])

    so that one backbone pass sees all views and BatchNorm normalises them
    together, as in the papers' code. :class:`mmlt.ContrastiveClsHead` splits
    the rows back. Single-view batches (testing) pass through unchanged.
    Batches whose samples are partly unlabeled (no ``gt_label``;
    semi-supervised training) are taken as they are.

    Args:
        channels_last (bool): Return image batches in the channels-last
            memory format (same values and shape, NHWC strides). Convolutions
            then run in that format too, which oneDNN on CPUs and cuDNN
            under AMP prefer (docs/gpu.md). Defaults to False.
        non_blocking (bool): Copy batches to the GPU without blocking the
            host (with ``pin_memory=True`` in the loader the copy overlaps
            the step before it). Defaults to True (MMPretrain: False).
        **kwargs: the arguments of ``ClsDataPreprocessor`` (mean, std,
            to_rgb, num_classes, batch_augments, ...). Batch augmentations
            (mixup/cutmix) would mix only the classification view, so they are
            refused with several views.
    """

    def __init__(self,
                 channels_last: bool = False,
                 non_blocking: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # MMEngine's cast_data reads it; ClsDataPreprocessor does not take
        # it as an argument.
        self._non_blocking = non_blocking
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data.get('data_samples')
        labeled = [s for s in samples or () if 'gt_label' in s]
        if samples and labeled and len(labeled) < len(samples):
            # A semi-supervised batch (some samples without gt_label), which
            # ClsDataPreprocessor does not take: labels moved here.
            out = self._stack_views(dict(data, data_samples=None), training)
            for sample in labeled:
                sample.set_gt_label(
                    sample.gt_label.to(
                        self.device, non_blocking=self._non_blocking))
            out['data_samples'] = samples
        else:
            out = self._stack_views(data, training)
        inputs = out['inputs']
        if (self.channels_last and isinstance(inputs, torch.Tensor)
                and inputs.dim() == 4):
            out['inputs'] = inputs.contiguous(
                memory_format=torch.channels_last)
        return out

    def _stack_views(self, data: dict, training: bool) -> dict:
        inputs = data['inputs']
        if not self._is_multi_view(inputs):
            return super().forward(data, training)
        if training and self.batch_augments is not None:
            raise ValueError(
                'batch_augments (mixup/cutmix) mix only the first view of a '
                'multi-view batch; remove them from data_preprocessor or use '
                'a single view')
        views = [
            view if isinstance(view, torch.Tensor) else list(view)
            for view in inputs
        ]
        first = super().forward(
            dict(inputs=views[0], data_samples=data.get('data_samples')),
            training)
        stacked = [first['inputs']]
        for view in views[1:]:
            out = super().forward(dict(inputs=view, data_samples=None),
                                  training)['inputs']
            if out.shape[1:] != stacked[0].shape[1:]:
                raise ValueError(
                    f'all views must have the same shape to share a backbone '
                    f'pass, got {tuple(stacked[0].shape[1:])} and '
                    f'{tuple(out.shape[1:])}; give every view the same crop '
                    'size in the pipeline')
            stacked.append(out)
        return dict(
            inputs=torch.cat(stacked, dim=0),
            data_samples=first['data_samples'])

    @staticmethod
    def _is_multi_view(inputs) -> bool:
        """pseudo_collate turns per-sample view lists into a list of views,
        each a list of per-sample tensors (or a stacked tensor)."""
        if not isinstance(inputs, (list, tuple)) or not inputs:
            return False
        first = inputs[0]
        return isinstance(first, (list, tuple)) or (
            isinstance(first, torch.Tensor) and first.dim() == 4)
