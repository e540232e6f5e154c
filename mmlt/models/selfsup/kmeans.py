"""k-means for prototype learning, and PCL's per-cluster concentration.

:func:`kmeans` clusters a feature matrix with Lloyd's algorithm in torch
(k-means++ or random initialisation drawn from a seeded ``torch.Generator``,
several restarts, optional spherical update for unit features) or, with
``backend='faiss'``, with faiss. The torch path is deterministic: the same
features and seed give the same centroids on any run, including on CUDA, as
the per-cluster sums avoid atomic (order-dependent) additions.

:func:`estimate_concentration` is the concentration ``phi`` of Prototypical
Contrastive Learning (Li et al., ICLR 2021, Eq. 12), with the paper's
clipping and rescaling.
"""
import importlib.util
import warnings
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from mmlt.utils.validation import check_choice, check_int
import torch.nn.functional as F

_BACKENDS = ('auto', 'torch', 'faiss')
_INITS = ('k-means++', 'random')
# Rows of the (rows x clusters) distance block held at once: 2**24 entries,
# 64 MB in float32.
_DISTANCE_BLOCK_ENTRIES = 2**24
# Feature columns summed at once by :func:`segment_sum` (bounds its float64
# scratch memory to N x 16).
_SEGMENT_SUM_COLUMNS = 16


class KMeansResult(NamedTuple):
    """The output of :func:`kmeans`.

    Attributes:
        centroids (torch.Tensor): ``(k, p)``, in the features' dtype. Unit
            vectors for spherical k-means.
        assignments (torch.Tensor): ``(N, )`` long, the nearest centroid of
            each feature.
        inertia (float): Sum over features of the squared Euclidean distance
            to their centroid.
        num_iters (int): Lloyd iterations run by the best restart (fewer than
            asked when the assignments stopped changing; faiss reports the
            number asked).
    """
    centroids: torch.Tensor
    assignments: torch.Tensor
    inertia: float
    num_iters: int


def faiss_available() -> bool:
    """Whether the ``faiss`` package can be imported."""
    return importlib.util.find_spec('faiss') is not None


def _check_features(features: torch.Tensor, num_clusters: int) -> None:
    if features.dim() != 2:
        raise ValueError(
            f'features have shape {tuple(features.shape)}; expected (N, p).')
    if not features.is_floating_point():
        raise ValueError(
            f'features must be floating point, got {features.dtype}.')
    check_int('num_clusters', num_clusters)
    if num_clusters > features.shape[0]:
        raise ValueError(
            f'num_clusters={num_clusters} is larger than the number of '
            f'features {features.shape[0]}; expected at most one cluster per '
            'feature.')
    if not torch.isfinite(features).all():
        raise ValueError('features contain NaN or inf; k-means needs finite '
                         'features.')


def _block_rows(num_clusters: int, chunk_size: Optional[int]) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(
                f'chunk_size={chunk_size}; expected a positive int or None.')
        return chunk_size
    return max(1, _DISTANCE_BLOCK_ENTRIES // num_clusters)


def assign_to_centroids(
        features: torch.Tensor,
        centroids: torch.Tensor,
        chunk_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (Euclidean) of every feature, in blocks of rows.

    For unit centroids this is also the centroid of largest cosine
    similarity. Ties go to the lower centroid index.

    Args:
        features (torch.Tensor): ``(N, p)``.
        centroids (torch.Tensor): ``(k, p)``.
        chunk_size (int, optional): Rows per block; by default blocks of
            about ``2**24`` distances.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: assignments ``(N, )`` long and the
        squared distances to the assigned centroids ``(N, )``, clamped at 0.
    """
    rows = _block_rows(centroids.shape[0], chunk_size)
    centroid_sq_norms = (centroids * centroids).sum(dim=1)
    assignments, sq_distances = [], []
    for start in range(0, features.shape[0], rows):
        block = features[start:start + rows]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the
        # argmin, so it is added back only for the chosen centroid.
        partial = centroid_sq_norms[None, :] - 2.0 * (block @ centroids.T)
        best, index = partial.min(dim=1)
        assignments.append(index)
        sq_distances.append(((block * block).sum(dim=1) + best).clamp_min(0))
    return torch.cat(assignments), torch.cat(sq_distances)


def segment_sum(values: torch.Tensor, segment_ids: torch.Tensor,
                num_segments: int) -> torch.Tensor:
    """Sum the rows of ``values`` per segment, deterministically, in float64.

    The rows are sorted by segment (stably) and summed with a cumulative sum,
    so the result does not depend on the order of atomic additions (as
    ``index_add_`` on CUDA would).

    Args:
        values (torch.Tensor): ``(N, d)``.
        segment_ids (torch.Tensor): ``(N, )`` integers in
            ``[0, num_segments)``.
        num_segments (int): Number of segments.

    Returns:
        torch.Tensor: ``(num_segments, d)`` float64; empty segments sum to 0.
    """
    order = torch.argsort(segment_ids, stable=True)
    counts = torch.bincount(segment_ids, minlength=num_segments)
    ends = torch.cumsum(counts, dim=0)
    starts = ends - counts
    sums = []
    for column in range(0, values.shape[1], _SEGMENT_SUM_COLUMNS):
        block = values[order, column:column + _SEGMENT_SUM_COLUMNS].double()
        running = torch.cat(
            [block.new_zeros(1, block.shape[1]),
             torch.cumsum(block, dim=0)])
        sums.append(running[ends] - running[starts])
    if not sums:
        return values.new_zeros(num_segments, 0, dtype=torch.float64)
    return torch.cat(sums, dim=1)


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def kmeans_plusplus(features: torch.Tensor,
                    num_clusters: int,
                    generator: torch.Generator,
                    spherical: bool = False) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, SODA 2007).

    The first centroid is a uniformly drawn feature; each next one is drawn
    with probability proportional to the squared distance to the nearest
    centroid chosen so far. The draws use ``generator`` (a CPU generator
    works for features on any device), so the seeding is reproducible.

    Args:
        features (torch.Tensor): ``(N, p)``.
        num_clusters (int): ``k <= N``.
        generator (torch.Generator): CPU random generator.
        spherical (bool): L2-normalise the chosen centroids. Defaults to
            False.

    Returns:
        torch.Tensor: ``(k, p)`` initial centroids.
    """
    _check_features(features, num_clusters)
    num_features = features.shape[0]
    chosen = [int(torch.randint(num_features, (), generator=generator))]
    min_sq_distance = ((features - features[chosen[0]])**2).sum(dim=1)
    for _ in range(1, num_clusters):
        weights = min_sq_distance.double()
        cumulative = torch.cumsum(weights, dim=0)
        total = float(cumulative[-1])
        if total > 0:
            threshold = torch.tensor(
                _uniform(generator) * total,
                dtype=torch.float64,
                device=features.device)
            index = int(torch.searchsorted(cumulative, threshold, right=True))
            index = min(index, num_features - 1)
            # Rounding can land on a zero-weight (already covered) point.
            while float(weights[index]) <= 0:
                index -= 1
        else:
            # Every feature coincides with a chosen centroid: draw uniformly.
            index = int(torch.randint(num_features, (), generator=generator))
        chosen.append(index)
        min_sq_distance = torch.minimum(
            min_sq_distance, ((features - features[index])**2).sum(dim=1))
    centroids = features[torch.tensor(chosen, device=features.device)].clone()
    return F.normalize(centroids, dim=1) if spherical else centroids


def _lloyd(features: torch.Tensor, centroids: torch.Tensor, num_iters: int,
           spherical: bool,
           chunk_size: Optional[int]) -> Tuple[torch.Tensor, int]:
    """Run at most ``num_iters`` assignment + update rounds from
    ``centroids``."""
    num_clusters = centroids.shape[0]
    previous = None
    iters_run = 0
    for _ in range(num_iters):
        assignments, sq_distances = assign_to_centroids(
            features, centroids, chunk_size)
        counts = torch.bincount(assignments, minlength=num_clusters)
        empty = torch.nonzero(counts == 0).flatten()
        if previous is not None and len(empty) == 0 and torch.equal(
                assignments, previous):
            break  # converged: the update would give the same centroids
        previous = assignments
        iters_run += 1
        sums = segment_sum(features, assignments, num_clusters)
        updated = sums / counts.clamp_min(1)[:, None].double()
        if len(empty) > 0:
            # An empty cluster restarts at the features farthest from their
            # centroids (one distinct feature each), as scikit-learn does.
            farthest = torch.argsort(
                sq_distances, descending=True, stable=True)[:len(empty)]
            updated[empty] = features[farthest].double()
        if spherical:
            updated = F.normalize(updated, dim=1)
        centroids = updated.to(features.dtype)
    return centroids, iters_run


def _torch_kmeans(features: torch.Tensor, num_clusters: int, num_iters: int,
                  num_restarts: int, spherical: bool,
                  init: Union[str, torch.Tensor], seed: int,
                  chunk_size: Optional[int]) -> KMeansResult:
    generator = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(num_restarts):
        if isinstance(init, torch.Tensor):
            centroids = init.to(device=features.device, dtype=features.dtype)
            if spherical:
                centroids = F.normalize(centroids, dim=1)
        elif init == 'k-means++':
            centroids = kmeans_plusplus(features, num_clusters, generator,
                                        spherical)
        else:
            index = torch.randperm(
                features.shape[0], generator=generator)[:num_clusters]
            centroids = features[index.to(features.device)].clone()
            if spherical:
                centroids = F.normalize(centroids, dim=1)
        centroids, iters_run = _lloyd(features, centroids, num_iters,
                                      spherical, chunk_size)
        assignments, sq_distances = assign_to_centroids(
            features, centroids, chunk_size)
        inertia = float(sq_distances.double().sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(centroids, assignments, inertia, iters_run)
    return best


def _faiss_kmeans(features: torch.Tensor, num_clusters: int, num_iters: int,
                  num_restarts: int, spherical: bool, seed: int,
                  faiss_kwargs: Optional[dict]) -> KMeansResult:
    import faiss
    import numpy as np
    data = np.ascontiguousarray(
        features.detach().float().cpu().numpy(), dtype=np.float32)
    clustering = faiss.Kmeans(
        data.shape[1],
        num_clusters,
        niter=num_iters,
        nredo=num_restarts,
        seed=seed,
        spherical=spherical,
        verbose=False,
        **(faiss_kwargs or {}))
    clustering.train(data)
    # The index scores by inner product when spherical, so the distances are
    # recomputed here; the assignment is the nearest centroid either way.
    _, nearest = clustering.index.search(data, 1)
    centroids = torch.from_numpy(np.array(clustering.centroids)).to(
        device=features.device, dtype=features.dtype)
    assignments = torch.from_numpy(nearest[:, 0].astype(np.int64)).to(
        features.device)
    sq_distances = ((features - centroids[assignments])**2).sum(dim=1)
    return KMeansResult(centroids, assignments,
                        float(sq_distances.double().sum()), num_iters)


def kmeans(features: torch.Tensor,
           num_clusters: int,
           num_iters: int = 20,
           num_restarts: int = 1,
           spherical: bool = False,
           init: Union[str, torch.Tensor] = 'k-means++',
           seed: int = 0,
           backend: str = 'torch',
           chunk_size: Optional[int] = None,
           faiss_kwargs: Optional[dict] = None) -> KMeansResult:
    """Cluster ``features`` into ``num_clusters`` groups with k-means.

    Torch backend: each restart seeds the centroids (``init``), then runs
    Lloyd iterations (assign every feature to its nearest centroid, move each
    centroid to the mean of its features) until the assignments stop
    changing or ``num_iters`` rounds are done; the restart with the lowest
    inertia wins. An empty cluster restarts at the feature farthest from its
    centroid. With ``spherical=True`` the centroids are L2-normalised after
    every update (spherical k-means, for unit features: the assignment is
    then the centroid of largest cosine similarity). The computation runs on
    the features' device, in blocks of rows, with float64 sums.

    Faiss backend (``'faiss'``, or ``'auto'`` when faiss is importable): the
    same algorithm in ``faiss.Kmeans`` with its own random initialisation
    (``init`` is ignored) and subsampling (see ``faiss_kwargs``); the features
    are copied to the CPU as float32.

    Args:
        features (torch.Tensor): ``(N, p)`` floating point.
        num_clusters (int): ``k``, at most ``N``.
        num_iters (int): Maximum Lloyd iterations per restart. Defaults to 20.
        num_restarts (int): Restarts from different seedings; the lowest
            inertia wins. Defaults to 1.
        spherical (bool): Spherical k-means. Defaults to False.
        init (str | torch.Tensor): ``'k-means++'``, ``'random'`` (``k``
            distinct features, as faiss does; much cheaper than k-means++ for
            large ``k``) or a ``(k, p)`` tensor of initial centroids (then
            every restart starts from it). Defaults to ``'k-means++'``.
        seed (int): Seed of the ``torch.Generator`` of the seeding (or of
            faiss). Defaults to 0.
        backend (str): ``'torch'``, ``'faiss'`` or ``'auto'``. Defaults to
            ``'torch'``.
        chunk_size (int, optional): Rows per distance block (torch backend).
        faiss_kwargs (dict, optional): Extra ``faiss.Kmeans`` options, e.g.
            ``max_points_per_centroid``.

    Returns:
        KMeansResult: centroids ``(k, p)``, assignments ``(N, )``, inertia
        and the number of iterations run.
    """
    _check_features(features, num_clusters)
    if num_iters < 1:
        raise ValueError(f'num_iters={num_iters}; expected a positive int.')
    if num_restarts < 1:
        raise ValueError(
            f'num_restarts={num_restarts}; expected a positive int.')
    check_choice('backend', backend, _BACKENDS)
    if isinstance(init, torch.Tensor):
        if init.shape != (num_clusters, features.shape[1]):
            raise ValueError(
                f'init centroids have shape {tuple(init.shape)}; expected '
                f'({num_clusters}, {features.shape[1]}).')
    elif init not in _INITS:
        raise ValueError(
            f'init={init!r}; expected one of {_INITS} or a tensor of initial '
            'centroids.')
    if backend == 'faiss' and not faiss_available():
        raise ValueError("backend='faiss' but faiss is not installed; use "
                         "backend='torch' or 'auto'.")
    use_faiss = backend == 'faiss' or (backend == 'auto' and faiss_available())
    features = features.detach()
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    if use_faiss:
        return _faiss_kmeans(features, num_clusters, num_iters, num_restarts,
                             spherical, seed, faiss_kwargs)
    return _torch_kmeans(features, num_clusters, num_iters, num_restarts,
                         spherical, init, seed, chunk_size)


def estimate_concentration(
        features: torch.Tensor,
        centroids: torch.Tensor,
        assignments: torch.Tensor,
        alpha: float = 10.0,
        clip_percentiles: Optional[Sequence[float]] = (10.0, 90.0),
        mean_concentration: Optional[float] = None) -> torch.Tensor:
    r"""Per-cluster concentration ``phi`` of PCL (Li et al., ICLR 2021).

    For a cluster with centroid ``c`` and ``Z`` member features ``v_z``:

    .. math::
        \phi = \frac{\sum_{z=1}^{Z} \lVert v_z - c \rVert_2}
                    {Z \log(Z + \alpha)}

    A small ``phi`` (tight, large cluster) sharpens the prototype's logits.
    Clusters with ``Z <= 1`` (no spread to measure) take the largest ``phi``
    of the others, as in the paper's code. Then ``phi`` is clipped to its
    ``clip_percentiles`` (linear-interpolated percentiles over all clusters,
    as numpy's default) and, if ``mean_concentration`` is given, rescaled so
    that its mean is ``mean_concentration`` (the temperature ``tau``).

    Args:
        features (torch.Tensor): ``(N, p)`` clustered features.
        centroids (torch.Tensor): ``(k, p)`` centroids, as k-means returned
            them (before any normalisation).
        assignments (torch.Tensor): ``(N, )`` cluster of each feature.
        alpha (float): Smoothing ``alpha >= 0`` that keeps small clusters
            from getting a tiny ``phi``. Defaults to 10.
        clip_percentiles (Sequence[float], optional): ``(low, high)`` in
            ``[0, 100]``; None disables clipping. Defaults to (10, 90).
        mean_concentration (float, optional): Target mean of ``phi``; None
            keeps the raw scale. Defaults to None.

    Returns:
        torch.Tensor: ``(k, )`` positive concentrations in the features'
        dtype.
    """
    _check_concentration_args(features, centroids, assignments, alpha,
                              clip_percentiles, mean_concentration)
    concentration = _raw_concentration(features, centroids, assignments,
                                       alpha)
    if clip_percentiles is not None:
        low, high = (float(p) for p in clip_percentiles)
        bounds = torch.quantile(
            concentration,
            torch.tensor([low / 100, high / 100],
                         dtype=torch.float64,
                         device=concentration.device))
        concentration = concentration.clamp(bounds[0], bounds[1])
    concentration = _make_positive(concentration)
    if mean_concentration is not None:
        concentration = concentration * (
            mean_concentration / concentration.mean())
    return concentration.to(features.dtype)


def _check_concentration_args(features: torch.Tensor,
                              centroids: torch.Tensor,
                              assignments: torch.Tensor, alpha: float,
                              clip_percentiles: Optional[Sequence[float]],
                              mean_concentration: Optional[float]) -> None:
    """The argument checks of :func:`estimate_concentration`."""
    if features.dim() != 2 or centroids.dim() != 2 or \
            features.shape[1] != centroids.shape[1]:
        raise ValueError(
            f'features {tuple(features.shape)} and centroids '
            f'{tuple(centroids.shape)} must be (N, p) and (k, p).')
    num_clusters = centroids.shape[0]
    if assignments.shape != (features.shape[0], ):
        raise ValueError(
            f'assignments have shape {tuple(assignments.shape)}; expected '
            f'({features.shape[0]}, ).')
    if assignments.numel() and (int(assignments.min()) < 0
                                or int(assignments.max()) >= num_clusters):
        raise ValueError(
            f'assignments must be in [0, {num_clusters - 1}], got min '
            f'{int(assignments.min())} and max {int(assignments.max())}.')
    if not alpha >= 0:
        raise ValueError(f'alpha={alpha}; expected a value >= 0.')
    if clip_percentiles is not None:
        low, high = (float(p) for p in clip_percentiles)
        if not 0 <= low <= high <= 100:
            raise ValueError(
                f'clip_percentiles={tuple(clip_percentiles)}; expected '
                '(low, high) with 0 <= low <= high <= 100, or None.')
    if mean_concentration is not None and not mean_concentration > 0:
        raise ValueError(f'mean_concentration={mean_concentration}; '
                         'expected a value > 0 or None.')


def _raw_concentration(features: torch.Tensor, centroids: torch.Tensor,
                       assignments: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """PCL's ``phi`` of every cluster in float64, before clipping; clusters
    with at most one member take the largest ``phi`` of the others."""
    num_clusters = centroids.shape[0]
    assignments = assignments.long()
    distances = (features.double() -
                 centroids.double()[assignments]).norm(dim=1)
    distance_sums = segment_sum(distances[:, None], assignments,
                                num_clusters)[:, 0]
    sizes = torch.bincount(
        assignments, minlength=num_clusters).to(torch.float64)
    measurable = sizes > 1
    if not measurable.any():
        raise ValueError(
            'every cluster has at most one member, so no concentration can '
            'be measured; use fewer clusters than features.')
    concentration = torch.zeros_like(sizes)
    concentration[measurable] = distance_sums[measurable] / (
        sizes[measurable] * torch.log(sizes[measurable] + alpha))
    concentration[~measurable] = concentration[measurable].max()
    return concentration


def _make_positive(concentration: torch.Tensor) -> torch.Tensor:
    """Replace zero concentrations (they would divide the logits by zero)
    by the smallest positive one, or all by 1 when none is positive."""
    positive = concentration > 0
    if not positive.any():
        warnings.warn('every cluster has zero spread (collapsed features); '
                      'using a uniform concentration.')
        return torch.ones_like(concentration)
    if not positive.all():
        concentration[~positive] = concentration[positive].min()
    return concentration
