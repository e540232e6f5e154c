"""mmlt.MultiSourceSampler: B labeled + mu * B unlabeled samples per batch."""
import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset

from dist_launch import init_gloo, run_two_ranks
from mmlt.datasets import MultiSourceSampler, SemiSupervisedDataset


class Range:
    """A dataset whose items are their indices."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return idx


def concat(*sizes):
    return ConcatDataset([Range(n) for n in sizes])


def batches(sampler):
    indices = list(sampler)
    assert len(indices) == len(sampler)
    return np.asarray(indices).reshape(-1, sampler.batch_size)


def test_every_batch_holds_its_shares():
    sampler = MultiSourceSampler(concat(50, 70), batch_size=12,
                                 source_ratio=[1, 2], seed=0)
    assert sampler.num_per_source == [4, 8]
    out = batches(sampler)
    assert out.shape == (50 // 4, 12)  # an epoch: one pass over source 0
    assert ((out[:, :4] >= 0) & (out[:, :4] < 50)).all()
    assert ((out[:, 4:] >= 50) & (out[:, 4:] < 120)).all()
    # no labeled sample twice in an epoch; 96 unlabeled draws from 70 are
    # one full pass plus 26 of a second permutation
    assert len(set(out[:, :4].ravel())) == out[:, :4].size
    unlabeled = out[:, 4:].ravel()
    assert sorted(unlabeled[:70]) == list(range(50, 120))
    assert len(set(unlabeled[70:])) == 26


def test_order_is_a_function_of_seed_and_epoch():
    def epoch_order(seed, epoch):
        sampler = MultiSourceSampler(concat(20, 40), 6, [1, 2], seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_order(0, 3) == epoch_order(0, 3)
    assert epoch_order(0, 3) != epoch_order(0, 4)
    assert epoch_order(0, 3) != epoch_order(1, 3)
    ordered = MultiSourceSampler(concat(4, 8), 3, [1, 2], shuffle=False)
    assert list(ordered) == [0, 4, 5, 1, 6, 7, 2, 8, 9, 3, 10, 11]


def test_epoch_length():
    sampler = MultiSourceSampler(concat(10, 10), 6, [1, 2], seed=0,
                                 epoch_length=7)
    out = batches(sampler)
    assert out.shape == (7, 6)
    # 14 labeled draws from 10: a pass and 4 of the next
    assert sorted(out[:, :2].ravel()[:10]) == list(range(10))


def test_bad_arguments():
    with pytest.raises(ValueError, match='multiple of 3'):
        MultiSourceSampler(concat(10, 10), 10, [1, 2])
    with pytest.raises(ValueError, match='one ratio per source'):
        MultiSourceSampler(concat(10, 10), 9, [1, 2, 3])
    with pytest.raises(ValueError, match='positive'):
        MultiSourceSampler(concat(10, 10), 9, [0, 2])
    with pytest.raises(TypeError, match='ConcatDataset'):
        MultiSourceSampler(Range(10), 9, [1, 2])
    with pytest.raises(ValueError, match='fewer than one batch'):
        MultiSourceSampler(concat(3, 10), 12, [1, 2])
    with pytest.raises(ValueError, match='epoch_length'):
        MultiSourceSampler(concat(10, 10), 6, [1, 2], epoch_length=0)


def test_mu_below_one_is_refused_for_semi_supervised_data():
    class Splits(SemiSupervisedDataset):
        # torch's ConcatDataset init: the sampler's check without the splits'
        # own (a Range is no BaseDataset)
        def __init__(self, labeled, unlabeled):
            ConcatDataset.__init__(self, [labeled, unlabeled])

    data = Splits(Range(10), Range(10))
    with pytest.raises(ValueError, match='mu >= 1'):
        MultiSourceSampler(data, 6, [2, 1])
    MultiSourceSampler(data, 6, [1, 2])


def _dist_worker(rank, port):
    init_gloo(rank, port)
    sampler = MultiSourceSampler(concat(40, 90), 6, [1, 2], seed=5)
    sampler.set_epoch(2)
    return dict(indices=list(sampler), len=len(sampler))


def test_two_ranks_get_disjoint_shards_of_both_sources(port):
    ranks = run_two_ranks(_dist_worker, port)
    # 40 labeled / (2 ranks * 2 per batch) = 10 batches per rank
    assert ranks[0]['len'] == ranks[1]['len'] == 60
    out = [np.asarray(r['indices']).reshape(-1, 6) for r in ranks]
    labeled = [o[:, :2].ravel() for o in out]
    unlabeled = [o[:, 4:].ravel() for o in out] + [o[:, 2:4].ravel()
                                                   for o in out]
    assert not set(labeled[0]) & set(labeled[1])
    assert sorted(np.concatenate(labeled)) == list(range(40))
    # 80 unlabeled draws of 90 over both ranks: no repeat, none shared
    all_unlabeled = np.concatenate(unlabeled)
    assert len(set(all_unlabeled)) == 80 and all_unlabeled.min() >= 40
    # exactly the single-process stream, strided: rank r takes r, r + 2, ...
    generator = torch.Generator()
    generator.manual_seed(5 + 2)
    stream = torch.randperm(40, generator=generator)[:40]
    for rank in range(2):
        np.testing.assert_array_equal(
            out[rank][:, :2].ravel(), stream[rank::2].numpy())
