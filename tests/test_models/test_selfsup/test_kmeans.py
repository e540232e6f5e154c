"""k-means against scikit-learn and a slow Lloyd loop; PCL's concentration
against its formula evaluated cluster by cluster."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmlt.models.selfsup.kmeans import estimate_concentration, kmeans
from mmlt.models.selfsup.kmeans import (assign_to_centroids, faiss_available,
                                      kmeans_plusplus, segment_sum)


def blobs(num_per_blob=40, num_blobs=4, dim=5, spread=0.05, seed=0):
    """Well separated Gaussian blobs and their labels."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(
        num_blobs, dim, generator=generator, dtype=torch.float64) * 5
    labels = torch.arange(num_blobs).repeat_interleave(num_per_blob)
    noise = torch.randn(
        len(labels), dim, generator=generator, dtype=torch.float64) * spread
    return centers[labels] + noise, labels


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two labelings define the same partition (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def slow_lloyd(points, centroids, num_iters, spherical=False):
    """Textbook Lloyd iterations with Python loops (no empty clusters)."""
    points = points.tolist()
    centroids = [list(c) for c in centroids.tolist()]
    for _ in range(num_iters):
        assignment = []
        for x in points:
            distances = [
                sum((xi - ci)**2 for xi, ci in zip(x, c)) for c in centroids
            ]
            assignment.append(distances.index(min(distances)))
        for j in range(len(centroids)):
            members = [x for x, a in zip(points, assignment) if a == j]
            assert members, 'the reference loop assumes no empty cluster'
            mean = [sum(column) / len(members) for column in zip(*members)]
            if spherical:
                norm = math.sqrt(sum(v * v for v in mean))
                mean = [v / norm for v in mean]
            centroids[j] = mean
    assignment = []
    for x in points:
        distances = [
            sum((xi - ci)**2 for xi, ci in zip(x, c)) for c in centroids
        ]
        assignment.append(distances.index(min(distances)))
    return torch.tensor(
        centroids, dtype=torch.float64), torch.tensor(assignment)


def test_blobs_match_sklearn_inertia_and_partition():
    sklearn_cluster = pytest.importorskip('sklearn.cluster')
    points, labels = blobs()
    result = kmeans(points, 4, num_restarts=3, seed=1)
    reference = sklearn_cluster.KMeans(
        n_clusters=4, n_init=10, random_state=0).fit(points.numpy())
    assert result.inertia == pytest.approx(reference.inertia_, rel=1e-9)
    assert same_partition(result.assignments, labels)
    # each centroid is its blob's mean
    for j in range(4):
        members = points[result.assignments == j]
        torch.testing.assert_close(result.centroids[j], members.mean(0))


def test_lloyd_matches_slow_loop_from_the_same_init():
    generator = torch.Generator().manual_seed(3)
    points = torch.randn(60, 3, generator=generator, dtype=torch.float64)
    init = points[[0, 7, 19, 33, 51]].clone()
    expected_centroids, expected_assignments = slow_lloyd(points, init, 4)
    result = kmeans(points, 5, num_iters=4, init=init)
    torch.testing.assert_close(result.centroids, expected_centroids)
    assert torch.equal(result.assignments, expected_assignments)
    inertia = ((points - expected_centroids[expected_assignments])**2).sum()
    assert result.inertia == pytest.approx(float(inertia), rel=1e-12)


def test_spherical_lloyd_matches_slow_loop():
    generator = torch.Generator().manual_seed(4)
    points = F.normalize(
        torch.randn(50, 4, generator=generator, dtype=torch.float64), dim=1)
    init = points[[2, 11, 29, 40]].clone()
    expected_centroids, expected_assignments = slow_lloyd(
        points, init, 3, spherical=True)
    result = kmeans(points, 4, num_iters=3, init=init, spherical=True)
    torch.testing.assert_close(result.centroids, expected_centroids)
    assert torch.equal(result.assignments, expected_assignments)
    torch.testing.assert_close(
        result.centroids.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_stops_when_assignments_are_stable():
    points, _ = blobs()
    result = kmeans(points, 4, num_iters=50, seed=0)
    assert result.num_iters < 50


def test_deterministic_and_seeded():
    points = torch.randn(200, 6, generator=torch.Generator().manual_seed(5))
    first = kmeans(points, 7, num_restarts=2, seed=11)
    second = kmeans(points, 7, num_restarts=2, seed=11)
    assert torch.equal(first.centroids, second.centroids)
    assert torch.equal(first.assignments, second.assignments)
    third = kmeans(points, 7, num_iters=1, seed=12)
    one_iter = kmeans(points, 7, num_iters=1, seed=11)
    assert not torch.equal(third.centroids, one_iter.centroids)


def test_restarts_keep_the_lowest_inertia():
    points = torch.randn(120, 2, generator=torch.Generator().manual_seed(6))
    single = kmeans(points, 6, num_iters=2, init='random', seed=9)
    best = kmeans(
        points, 6, num_iters=2, num_restarts=4, init='random', seed=9)
    # the first restart draws what the single run draws
    assert best.inertia <= single.inertia
    recomputed = ((points - best.centroids[best.assignments])**2).sum()
    assert best.inertia == pytest.approx(float(recomputed), rel=1e-5)


def test_kmeans_plusplus_picks_one_point_per_blob():
    points, labels = blobs(num_blobs=5, spread=0.01)
    generator = torch.Generator().manual_seed(0)
    centroids = kmeans_plusplus(points, 5, generator)
    nearest, _ = assign_to_centroids(centroids, points)
    assert sorted(labels[nearest].tolist()) == [0, 1, 2, 3, 4]


def test_empty_cluster_is_relocated_to_the_farthest_point():
    points = torch.tensor([[0.], [0.1], [0.2], [10.]], dtype=torch.float64)
    # centroid 1 sits where no point is nearest to it
    init = torch.tensor([[0.1], [100.]], dtype=torch.float64)
    result = kmeans(points, 2, num_iters=1, init=init)
    # centroid 0 takes the mean of all points, centroid 1 the farthest one
    torch.testing.assert_close(
        result.centroids, torch.tensor([[2.575], [10.]], dtype=torch.float64))
    result = kmeans(points, 2, num_iters=2, init=init)
    torch.testing.assert_close(
        result.centroids, torch.tensor([[0.1], [10.]], dtype=torch.float64))
    assert result.assignments.tolist() == [0, 0, 0, 1]


def test_chunked_assignment_equals_full():
    generator = torch.Generator().manual_seed(7)
    points = torch.randn(101, 5, generator=generator, dtype=torch.float64)
    centroids = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    full = assign_to_centroids(points, centroids)
    chunked = assign_to_centroids(points, centroids, chunk_size=8)
    assert torch.equal(full[0], chunked[0])
    torch.testing.assert_close(full[1], chunked[1])
    expected = ((points - centroids[full[0]])**2).sum(1)
    torch.testing.assert_close(full[1], expected)


def test_segment_sum_matches_loop():
    generator = torch.Generator().manual_seed(8)
    values = torch.randn(50, 20, generator=generator)
    ids = torch.randint(0, 6, (50, ), generator=generator)
    ids[ids == 4] = 5  # segment 4 empty
    sums = segment_sum(values, ids, 7)
    for j in range(7):
        expected = values[ids == j].double().sum(0)
        torch.testing.assert_close(sums[j], expected)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_clusters=0), 'num_clusters'),
    (dict(num_clusters=11), 'larger than'),
    (dict(num_clusters=2, backend='cuml'), 'backend'),
    (dict(num_clusters=2, init='furthest'), 'init'),
    (dict(num_clusters=2, num_iters=0), 'num_iters'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kmeans(torch.randn(10, 2), **kwargs)


@pytest.mark.skipif(not faiss_available(), reason='faiss is not installed')
def test_faiss_backend_on_blobs():
    points, labels = blobs()
    result = kmeans(points.float(), 4, num_restarts=5, backend='faiss')
    assert same_partition(result.assignments, labels)


def slow_concentration(points, centroids, assignment, alpha, percentiles, tau):
    """phi by its formula, one cluster at a time, then numpy's percentiles."""
    k = len(centroids)
    phi = [None] * k
    for j in range(k):
        members = [
            points[i] for i in range(len(points)) if int(assignment[i]) == j
        ]
        if len(members) > 1:
            total = sum(
                math.sqrt(sum((a - b)**2 for a, b in zip(v, centroids[j])))
                for v in members)
            phi[j] = total / (len(members) * math.log(len(members) + alpha))
    largest = max(p for p in phi if p is not None)
    phi = np.array([largest if p is None else p for p in phi])
    if percentiles is not None:
        phi = np.clip(phi, np.percentile(phi, percentiles[0]),
                      np.percentile(phi, percentiles[1]))
    if tau is not None:
        phi = tau * phi / phi.mean()
    return phi


@pytest.mark.parametrize('percentiles, tau', [(None, None), ((10, 90), 0.2),
                                              ((25, 60), 0.1)])
def test_concentration_matches_formula(percentiles, tau):
    generator = torch.Generator().manual_seed(9)
    points = torch.randn(80, 3, generator=generator, dtype=torch.float64)
    centroids = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    assignment = torch.randint(0, 10, (80, ), generator=generator)
    assignment[0] = 10  # a singleton; cluster 11 stays empty
    assignment[1:][assignment[1:] == 10] = 3
    phi = estimate_concentration(
        points,
        centroids,
        assignment,
        alpha=10,
        clip_percentiles=percentiles,
        mean_concentration=tau)
    expected = slow_concentration(points.tolist(), centroids.tolist(),
                                  assignment, 10, percentiles, tau)
    np.testing.assert_allclose(phi.numpy(), expected, rtol=1e-12)
    if tau is not None:
        assert float(phi.mean()) == pytest.approx(tau)
    if percentiles is None:
        # singleton and empty clusters take the largest measured phi
        assert float(phi[10]) == float(phi[11]) == float(phi[:10].max())


def test_concentration_is_smaller_for_tighter_and_larger_clusters():
    tight, _ = blobs(num_per_blob=50, num_blobs=1, spread=0.01, seed=1)
    loose, _ = blobs(num_per_blob=50, num_blobs=1, spread=0.1, seed=2)
    small, _ = blobs(num_per_blob=5, num_blobs=1, spread=0.01, seed=3)
    points = torch.cat([tight, loose + 100, small - 100])
    assignment = torch.tensor([0] * 50 + [1] * 50 + [2] * 5)
    centroids = torch.stack(
        [points[assignment == j].mean(0) for j in range(3)])
    phi = estimate_concentration(
        points, centroids, assignment, clip_percentiles=None)
    assert phi[0] < phi[1]
    assert phi[0] < phi[2]  # alpha favours the larger of two equally tight


def test_concentration_rejects_all_singletons():
    points = torch.randn(4, 2)
    with pytest.raises(ValueError, match='at most one member'):
        estimate_concentration(points, points.clone(), torch.arange(4))
