"""Samplers that resume inside an epoch: the first passes after a restart
leave out the indices the interrupted epoch had already used.

:class:`FirstIndicesSkipping` implements
:class:`mmlt.engine.protocols.SkipsFirstIndices` for any sampler (mmlt's
class-aware and multi-source samplers inherit it);
:class:`ResumableSampler` is MMEngine's ``DefaultSampler`` with it.
"""
import itertools
from typing import Iterator

from mmengine.dataset import DefaultSampler

from mmlt.engine.protocols import SkipsFirstIndices
from mmlt.registry import DATA_SAMPLERS
from mmlt.utils.validation import check_int


class FirstIndicesSkipping(SkipsFirstIndices):
    """While :meth:`skip_first` is set, each pass and the length leave out
    the first indices: a sampler's ``__iter__`` returns
    ``self._without_skipped(indices)`` and its ``__len__``
    ``self._length_without_skipped(length)``."""

    num_skipped = 0

    def skip_first(self, num_indices: int) -> None:
        """Leave out the first ``num_indices`` indices of each pass (0: none).
        """
        self.num_skipped = check_int('num_indices', num_indices, minimum=0)

    def _without_skipped(self, indices: Iterator[int]) -> Iterator[int]:
        if self.num_skipped:
            return itertools.islice(indices, self.num_skipped, None)
        return indices

    def _length_without_skipped(self, length: int) -> int:
        return max(length - self.num_skipped, 0)


@DATA_SAMPLERS.register_module()
class ResumableSampler(FirstIndicesSkipping, DefaultSampler):
    """MMEngine's ``DefaultSampler`` (same arguments, same order) that
    :class:`mmlt.ExactResumeHook` can start mid-epoch: ``DefaultSampler``
    always starts its pass at the first index.

    ``train_dataloader = dict(sampler=dict(type='mmlt.ResumableSampler',
    shuffle=True), ...)``
    """

    def __iter__(self) -> Iterator[int]:
        return self._without_skipped(super().__iter__())

    def __len__(self) -> int:
        return self._length_without_skipped(super().__len__())
