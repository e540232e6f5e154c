from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.dataset import (ClassBalancedDataset, ConcatDataset,
                              DefaultSampler, RepeatDataset)
from mmengine.registry import DATA_SAMPLERS as ROOT_DATA_SAMPLERS
from scipy.stats import chisquare

from mmlt.datasets.lt_base import LongTailDataset
from mmlt.datasets.samplers import (ClassAwareSampler,
                                    ProgressivelyBalancedSampler,
                                    SquareRootSampler)

SAMPLER_MODULE = 'mmlt.datasets.samplers.class_aware_sampler'
# A chi-square p-value below this fails; the draws are seeded, so the tests
# are deterministic and this only guards against a wrong distribution.
P_MIN = 1e-3


class LabelsDataset(LongTailDataset):
    """Labels only; class 4 is named but has no image."""
    METAINFO = {'classes': ('c0', 'c1', 'c2', 'c3', 'c4', 'c5')}

    def __init__(self, labels, **kwargs):
        self._labels = list(labels)
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self):
        return [dict(gt_label=int(y)) for y in self._labels]


COUNTS = [400, 100, 25, 5, 0, 2]


def _dataset(counts=COUNTS, shuffle_seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.RandomState(shuffle_seed).shuffle(labels)
    return LabelsDataset(labels)


def _labels_of(dataset, indices):
    # Through the dataset's own index mapping, independent of the sampler.
    return np.array([dataset.get_data_info(i)['gt_label'] for i in indices])


def _assert_distribution(observed_labels, probabilities):
    probabilities = np.asarray(probabilities, dtype=np.float64)
    counts = np.bincount(observed_labels, minlength=len(probabilities))
    support = probabilities > 0
    assert counts[~support].sum() == 0, 'drew a class with probability 0'
    expected = probabilities[support] * len(observed_labels)
    assert chisquare(counts[support], expected).pvalue > P_MIN, (
        counts, expected)


def test_class_aware_frequencies_and_instances():
    ds = _dataset()
    sampler = ClassAwareSampler(ds, seed=0, epoch_length=20000)
    present = np.array(COUNTS) > 0
    expected = present / present.sum()
    np.testing.assert_allclose(sampler.class_probabilities().numpy(),
                               expected)
    indices = list(sampler)
    assert len(indices) == 20000
    labels = _labels_of(ds, indices)
    _assert_distribution(labels, expected)
    # Within a class, every image is equally likely.
    class2 = np.array([i for i, y in zip(indices, labels) if y == 2])
    per_image = np.unique(class2, return_counts=True)[1]
    assert len(per_image) == 25
    assert chisquare(per_image).pvalue > P_MIN


@pytest.mark.parametrize('power', [0.5, 0.0, 1.0, 2.0])
def test_square_root_frequencies(power):
    ds = _dataset()
    sampler = SquareRootSampler(ds, power=power, seed=1, epoch_length=20000)
    counts = np.array(COUNTS, dtype=np.float64)
    weights = np.where(counts > 0, counts**power, 0.0)
    expected = weights / weights.sum()
    np.testing.assert_allclose(sampler.class_probabilities().numpy(),
                               expected, rtol=1e-12)
    _assert_distribution(_labels_of(ds, list(sampler)), expected)


def test_progressively_balanced_schedule():
    ds = _dataset()
    total_epochs = 10
    sampler = ProgressivelyBalancedSampler(
        ds, total_epochs=total_epochs, seed=2, epoch_length=20000)
    counts = np.array(COUNTS, dtype=np.float64)
    instance = counts / counts.sum()
    balanced = (counts > 0) / (counts > 0).sum()
    for epoch in (0, 3, 10, 15):
        sampler.set_epoch(epoch)
        t = min(epoch / total_epochs, 1.0)
        expected = (1 - t) * instance + t * balanced
        np.testing.assert_allclose(sampler.class_probabilities().numpy(),
                                   expected, rtol=1e-12)
    sampler.set_epoch(5)
    _assert_distribution(
        _labels_of(ds, list(sampler)), 0.5 * instance + 0.5 * balanced)


def test_determinism_and_epochs():
    ds = _dataset()
    a = ClassAwareSampler(ds, seed=7)
    b = ClassAwareSampler(ds, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(a) != first
    assert list(ClassAwareSampler(ds, seed=8)) != first
    # shuffle=False: every epoch repeats the draw of the base seed.
    fixed = ClassAwareSampler(ds, seed=7, shuffle=False)
    fixed.set_epoch(4)
    assert list(fixed) == first


def test_seed_from_sync_random_seed():
    ds = _dataset()
    with mock.patch(f'{SAMPLER_MODULE}.sync_random_seed', return_value=99):
        sampler = ClassAwareSampler(ds)
    assert sampler.seed == 99
    assert list(sampler) == list(ClassAwareSampler(ds, seed=99))


def _sampler_on_rank(cls, dataset, rank, world_size, **kwargs):
    with mock.patch(
            f'{SAMPLER_MODULE}.get_dist_info',
            return_value=(rank, world_size)):
        return cls(dataset, **kwargs)


@pytest.mark.parametrize('round_up', [True, False])
@pytest.mark.parametrize('epoch_length', [100, 99, 7])
def test_rank_sharding_like_default_sampler(round_up, epoch_length):
    ds = _dataset()
    world_size = 3
    samplers = [
        _sampler_on_rank(
            SquareRootSampler,
            ds,
            rank,
            world_size,
            seed=5,
            round_up=round_up,
            epoch_length=epoch_length) for rank in range(world_size)
    ]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    # Same per-rank length as DefaultSampler over a set of that size.
    for rank, indices in enumerate(per_rank):
        with mock.patch(
                'mmengine.dataset.sampler.get_dist_info',
                return_value=(rank, world_size)):
            default = DefaultSampler(
                list(range(epoch_length)), seed=0, round_up=round_up)
        assert len(indices) == len(samplers[rank]) == len(default)
    # Rank r holds positions r, r + W, ... of one rank-independent draw.
    full = samplers[0].draw_epoch().reshape(-1)
    for s in samplers[1:]:
        assert torch.equal(s.draw_epoch().reshape(-1), full)
    total = sum(len(x) for x in per_rank)
    assert total == (samplers[0].total_size)
    merged = [None] * total
    for rank, indices in enumerate(per_rank):
        for i, index in enumerate(indices):
            position = rank + world_size * i
            assert merged[position] is None  # no overlap
            merged[position] = index
    assert merged == full[:total].tolist()


def test_rank_sharding_keeps_class_groups():
    ds = _dataset()
    k, world_size = 4, 2
    samplers = [
        _sampler_on_rank(
            ClassAwareSampler,
            ds,
            rank,
            world_size,
            seed=0,
            num_samples_cls=k,
            epoch_length=50) for rank in range(world_size)
    ]
    groups = samplers[0].draw_epoch()
    assert groups.shape[1] == k
    for rank, s in enumerate(samplers):
        indices = list(s)
        assert len(indices) == 25
        labels = _labels_of(ds, indices)
        # Runs of k consecutive samples from one class on every rank.
        for start in range(0, 24, k):
            assert len(set(labels[start:start + k].tolist())) == 1
        assert indices == groups[rank::world_size].reshape(-1)[:25].tolist()
    assert sum(len(s) for s in samplers) == 50


@pytest.mark.parametrize('wrap', ['concat', 'repeat', 'class_balanced'])
def test_wrapped_datasets(wrap):
    head = _dataset([30, 10, 3, 0, 0, 0], shuffle_seed=1)
    tail = _dataset([0, 0, 5, 2, 0, 1], shuffle_seed=2)
    if wrap == 'concat':
        dataset = ConcatDataset([head, tail])
    elif wrap == 'repeat':
        dataset = RepeatDataset(tail, times=3)
    else:
        dataset = ClassBalancedDataset(head, oversample_thr=0.3)
    sampler = ClassAwareSampler(dataset, seed=3, epoch_length=6000)
    indices = list(sampler)
    assert max(indices) < len(dataset)
    labels = _labels_of(dataset, indices)
    wrapped_labels = _labels_of(dataset, range(len(dataset)))
    present = np.bincount(wrapped_labels, minlength=6) > 0
    _assert_distribution(labels, present / present.sum())
    # Every index of a class is reachable, uniformly (class 2 here).
    class2 = np.flatnonzero(wrapped_labels == 2)
    drawn = np.array(indices)[labels == 2]
    assert set(drawn.tolist()) == set(class2.tolist())
    per_index = np.array([(drawn == i).sum() for i in class2])
    assert chisquare(per_index).pvalue > P_MIN


def test_build_from_registry_and_dataloader():
    from mmengine.runner import Runner
    ds = _dataset()
    sampler = ROOT_DATA_SAMPLERS.build(
        dict(type='mmlt.SquareRootSampler', power=0.0),
        default_args=dict(dataset=ds, seed=0))
    assert isinstance(sampler, SquareRootSampler)
    loader = Runner.build_dataloader(
        dict(
            batch_size=8,
            num_workers=0,
            dataset=ds,
            sampler=dict(type='mmlt.ClassAwareSampler', num_samples_cls=4)),
        seed=0)
    batch = next(iter(loader))
    labels = [int(y) for y in batch['gt_label']]
    assert len(labels) == 8
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1


def test_invalid_arguments():
    ds = _dataset()
    with pytest.raises(ValueError, match='num_samples_cls'):
        ClassAwareSampler(ds, seed=0, num_samples_cls=0)
    with pytest.raises(ValueError, match='power'):
        SquareRootSampler(ds, seed=0, power=-1)
    with pytest.raises(ValueError, match='total_epochs'):
        ProgressivelyBalancedSampler(ds, seed=0, total_epochs=0)
    with pytest.raises(ValueError, match='epoch_length'):
        ClassAwareSampler(ds, seed=0, epoch_length=0)


def _sampler_worker(rank, port):
    from dist_launch import init_gloo
    init_gloo(rank, port)
    import torch.distributed as torch_dist
    ds = _dataset()
    # No seed: every rank must adopt rank 0's random seed (sync_random_seed
    # broadcasts it), whatever its own global RNG says.
    torch.manual_seed(1000 + rank)
    np.random.seed(1000 + rank)
    sampler = ClassAwareSampler(ds, num_samples_cls=2, epoch_length=101)
    sampler.set_epoch(3)
    mine = torch.tensor(list(sampler), dtype=torch.int64)
    gathered = [torch.empty_like(mine) for _ in range(2)]
    torch_dist.all_gather(gathered, mine)
    torch_dist.destroy_process_group()
    return dict(
        seed=sampler.seed,
        rank=sampler.rank,
        world_size=sampler.world_size,
        mine=mine,
        gathered=gathered)


def test_rank_sharding_on_two_gloo_processes(port):
    from dist_launch import run_two_ranks
    results = run_two_ranks(_sampler_worker, port)
    assert [r['rank'] for r in results] == [0, 1]
    assert {r['world_size'] for r in results} == {2}
    seed = results[0]['seed']
    assert results[1]['seed'] == seed
    # Each rank's own indices, and what the other rank received, agree.
    for r in range(2):
        for other in range(2):
            assert torch.equal(results[other]['gathered'][r],
                               results[r]['mine'])
    # Together the ranks hold one rank-independent draw, interleaved by
    # groups of num_samples_cls=2, with ceil(101 / 2) = 51 indices each.
    single = _sampler_on_rank(
        ClassAwareSampler,
        _dataset(),
        0,
        2,
        seed=seed,
        num_samples_cls=2,
        epoch_length=101)
    single.set_epoch(3)
    groups = single.draw_epoch()
    for r in range(2):
        assert len(results[r]['mine']) == 51
        expected = groups[r::2].reshape(-1)[:51]
        assert torch.equal(results[r]['mine'], expected)


@pytest.mark.parametrize('sampler_type', [ClassAwareSampler, SquareRootSampler])
def test_expected_draws_and_stream_counts(sampler_type):
    """expected_draws is N p_c / n_c per image of class c (by hand for the
    class-aware case: 5 classes with images, so 1/5 of 400 draws per class),
    matches the frequencies the sampler really draws, and gives the stream's
    class counts."""
    from mmlt.datasets.stream_counts import stream_class_counts
    ds = _dataset()
    sampler = sampler_type(ds, seed=0, epoch_length=400)
    draws = sampler.expected_draws().numpy()
    labels = _labels_of(ds, range(len(ds)))
    assert draws.sum() == pytest.approx(400)
    stream = stream_class_counts(ds, sampler)
    if sampler_type is ClassAwareSampler:
        np.testing.assert_allclose(draws, (400 / 5) / np.array(COUNTS)[labels])
        np.testing.assert_allclose(stream, [80, 80, 80, 80, 0, 80])
    else:  # p_c proportional to sqrt(n_c)
        root = np.sqrt(COUNTS)
        np.testing.assert_allclose(stream, 400 * root / root.sum())
    # Monte Carlo over 50 epochs of 400 draws
    observed = np.zeros(len(ds))
    for epoch in range(50):
        sampler.set_epoch(epoch)
        np.add.at(observed, list(sampler), 1)
    per_class = np.bincount(labels, weights=observed / 50, minlength=6)
    np.testing.assert_allclose(per_class, stream, rtol=0.1, atol=1)
