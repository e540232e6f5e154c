"""Class-aware sampling with epochs as long as repeat-factor sampling's."""
import math
from typing import Iterator, Optional

from mmdet.datasets.samplers import ClassAwareSampler
from mmengine.dataset import ClassBalancedDataset

from mmlt.datasets.samplers.resumable_sampler import FirstIndicesSkipping
from mmlt.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class RFSMatchedClassAwareSampler(FirstIndicesSkipping, ClassAwareSampler):
    """MMDetection's ``ClassAwareSampler`` whose epoch is a repeat-factor
    sampling epoch long, so the two samplers compare at equal iterations.

    MMDetection's sampler draws ``len(dataset)`` images per epoch, while an
    epoch of repeat-factor sampling (Gupta et al., LVIS, CVPR 2019; MMEngine's
    ``ClassBalancedDataset``) repeats image ``i`` ``ceil(r_i)`` times,
    ``r_i = max_{c in i} max(1, sqrt(t / f_c))`` with ``f_c`` the fraction of
    images containing ``c``. This sampler draws ``sum_i ceil(r_i)`` images
    per epoch (the length of ``ClassBalancedDataset(dataset, t)``, computed
    by MMEngine's own code), class-aware as MMDetection's: a category
    uniformly at random, then an image containing it. With the same
    ``train_cfg`` (12 epochs) a class-aware run then takes the iterations of
    the repeat-factor run it is compared with. Subclassed because the
    parent fixes the epoch length in its constructor.

    Args:
        dataset: The training dataset (not wrapped in
            ``ClassBalancedDataset``).
        seed (int, optional): As in ``ClassAwareSampler``.
        num_sample_class (int): Images drawn per category pick. Defaults to
            1.
        oversample_thr (float): The repeat-factor threshold ``t`` whose
            epoch length to match (1e-3 in the LVIS configs).
    """

    def __init__(self,
                 dataset,
                 seed: Optional[int] = None,
                 num_sample_class: int = 1,
                 oversample_thr: float = 1e-3) -> None:
        super().__init__(dataset, seed=seed, num_sample_class=num_sample_class)
        self.oversample_thr = oversample_thr
        self.epoch_length = len(
            ClassBalancedDataset(dataset=dataset,
                                 oversample_thr=oversample_thr))
        self.num_samples = int(math.ceil(self.epoch_length / self.world_size))
        self.total_size = self.num_samples * self.world_size

    def __iter__(self) -> Iterator[int]:
        return self._without_skipped(super().__iter__())

    def __len__(self) -> int:
        return self._length_without_skipped(super().__len__())
