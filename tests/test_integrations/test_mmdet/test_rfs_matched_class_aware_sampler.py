"""mmlt.RFSMatchedClassAwareSampler: class-aware draws, repeat-factor epoch
length (worked out by hand on five images)."""
import numpy as np
import pytest

pytest.importorskip('mmdet')

from mmengine.dataset import BaseDataset  # noqa: E402

import mmlt  # noqa: E402,F401
from mmlt.datasets.stream_counts import expected_draws  # noqa: E402
from mmlt.integrations.mmdet import RFSMatchedClassAwareSampler  # noqa: E402

# image -> categories; image frequencies f = (4/5, 1/5, 1/5)
IMAGES = [[0], [0], [0, 1], [0], [2]]


class Images(BaseDataset):
    METAINFO = dict(classes=('a', 'b', 'c'))

    def load_data_list(self):
        return [dict(cats=cats) for cats in IMAGES]

    def get_cat_ids(self, idx):
        return self.get_data_info(idx)['cats']


def test_epoch_is_a_repeat_factor_epoch_long():
    # t = 0.5: r_c = max(1, sqrt(0.5 / f_c)) = (1, 1.58, 1.58); images 2 and
    # 4 repeat ceil(1.58) = 2 times: 1 + 1 + 2 + 1 + 2 = 7 per epoch
    sampler = RFSMatchedClassAwareSampler(Images(), seed=0,
                                          oversample_thr=0.5)
    assert sampler.epoch_length == 7 and len(sampler) == 7
    indices = list(sampler)
    assert len(indices) == 7
    # a low threshold repeats nothing: len(dataset), MMDetection's length
    assert len(RFSMatchedClassAwareSampler(Images(), seed=0,
                                           oversample_thr=1e-3)) == 5


def test_draws_stay_class_aware():
    """Each category is picked equally often: image 4 (the only one with
    category 2) gets a third of the draws."""
    sampler = RFSMatchedClassAwareSampler(Images(), seed=0,
                                          oversample_thr=100.0)
    counts = np.zeros(len(IMAGES))
    for epoch in range(30):
        sampler.set_epoch(epoch)
        for idx in sampler:
            counts[idx] += 1
    assert counts[4] / counts.sum() == pytest.approx(1 / 3, abs=0.03)
    # the stream prior's expected draws follow the longer epoch
    draws = expected_draws(sampler.dataset, sampler)
    assert draws.sum() == pytest.approx(sampler.total_size)
    assert draws[4] == pytest.approx(sampler.total_size / 3)
