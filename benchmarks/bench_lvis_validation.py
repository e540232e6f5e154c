"""Validation at LVIS v1 scale, measured on a synthetic detector output.

Run from the repository root (CPU, one core is enough; about 5 minutes at
the defaults; the figures of docs/detection.md: add ``--scales 64 32 16``,
about 11 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_lvis_validation.py
    python benchmarks/bench_lvis_validation.py --scales 64 32 16   # + 1/16
    python benchmarks/bench_lvis_validation.py --class-stride 1  # all classes
    python benchmarks/bench_lvis_validation.py --device cuda       # mask paste

LVIS v1 val has 19,809 images and 1203 classes; the LVIS configs run
:class:`mmlt.PerClassTopKRoIHead` with ``dets_per_class`` K = 10,000, a score
floor of 1e-7, no per-image cap, 1000 proposals per image, and
:class:`mmlt.LVISFixedMetric` on 8 ranks. The script reports, in one run:

1. **Detections the head emits** (simulated at full scale). A detection of
   class c leaves the head when its score is above the floor and above c's
   K-th best score so far in the rank's pass; under DDP each rank keeps its
   own thresholds on its 1/W of the images. The score model, per image: each
   class is present with probability ``pi_c`` (Zipf-like over the classes in
   frequency order, ``--pos-per-image`` present classes per image on
   average), with 1 + Poisson(2.5) instances (12.3 per image, LVIS val's
   density); each instance gives ``--obj-proposals`` proposals a logit-normal
   score (logit mean 0, sd 2: median 0.5); every other proposal of every
   class gets a logit-normal "background" score, logit mean ``ln 1e-5 + 0.5
   ln(pi_c / geometric mean of pi)`` (median about 2e-6 for the rarest class,
   5e-5 for the most frequent) and sd 2, so that 93-100% of the scores pass
   the floor. Only the scores above the current threshold are drawn
   (binomial counts, then draws from the conditional tail). Thresholds are
   exact at the first 50 images of a pass and then at chunk boundaries
   (chunks of 2% of the images seen): inside a chunk, counting against the
   threshold at its start gives an upper bound and against the threshold at
   its end a lower bound of the exact count; both are printed. NMS is
   modelled as an independent thinning (``--nms-keep``, default 1: none, an
   upper bound); the standard AP's extra detections (at most 300 per image
   above 1e-4) are not counted. A check against the closed form for i.i.d.
   scores (``K + sum_{i=K+1}^{n} K / i`` for a stream of n scores; the same
   with images of m scores) runs first.
2. **The metric**, measured on a scaled LVIS: 1/s of the images and K / s,
   so that each class keeps K / s detections over 1/s of the images, as at
   full scale. A synthetic LVIS annotation file (1203 classes, r/c/f groups
   of 337/461/405, ground truth from the same presence draws, ellipse
   polygons, ``neg_category_ids`` and ``not_exhaustive_category_ids``) and
   the detections of a one-process pass of the model above (counted against
   the threshold at the start of each chunk) with masks as RLEs go through
   ``LVISFixedMetric.process`` and ``evaluate`` (standard AP, AP-fixed and
   AP-pool, bbox and segm), each scale in a fresh process. Measured: process
   time per detection, the budgets' size and their pickle size (what
   ``collect_results`` moves), the standard results' pickle size, the time
   to unpickle them, evaluate time (its parts), and the peak resident memory
   of processing and of evaluating (Linux ``VmHWM`` over the resident size
   before). The RLE encoding of a mask (a 28x28 mask pasted into its box on a
   640x480 image, ``encode_mask_results`` as the head calls it) is timed on
   its own. Full scale is extrapolated from the scales by a straight line in
   the fraction of the data set (detections, image x class pairs and
   annotations all grow linearly with it).
3. **The distributed timeout**: rank 0's time after the gather (unpickle,
   merge, standard and AP-fixed/pool evaluation) at full scale, plus the
   spread of the ranks' pass times, times a safety factor (``--safety``).

Every figure is printed with whether it was measured or extrapolated.
"""
import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.special import expit, logit, ndtr, ndtri

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LVIS_IMAGES, LVIS_CLASSES = 19809, 1203
GROUPS = (('f', 405), ('c', 461), ('r', 337))
HEIGHT, WIDTH = 480, 640
FIRST_EXACT = 50  # images of a pass with a threshold update after each


# ------------------------------------------------------------- score model
class ScoreModel:
    """Per-class presence and score distributions (module docstring)."""

    def __init__(self, num_classes=LVIS_CLASSES, pos_per_image=3.5,
                 proposals=1000, obj_proposals=10, nms_keep=1.0,
                 instances_mean=2.5, background=True, iid=False):
        self.num_classes, self.proposals = num_classes, proposals
        self.obj_proposals, self.nms_keep = obj_proposals, nms_keep
        self.instances_mean = instances_mean
        if iid:  # every score from one distribution, nothing present
            self.pi = np.zeros(num_classes)
            self.mu = np.zeros(num_classes)
        else:
            self.pi = zipf_presence(num_classes, pos_per_image)
            log_pi = np.log(self.pi)
            self.mu = math.log(1e-5) + 0.5 * (log_pi - log_pi.mean())
        self.sigma, self.obj_mu, self.obj_sigma = 2.0, 0.0, 2.0

    def subset(self, classes):
        """The model restricted to some classes."""
        sub = object.__new__(ScoreModel)
        sub.__dict__.update(self.__dict__)
        sub.pi, sub.mu = self.pi[classes], self.mu[classes]
        sub.num_classes = len(classes)
        return sub


def zipf_presence(num_classes, mean_present, top=0.4):
    """``pi_c = top * (c + 1) ** -beta``, ``beta`` so that they sum to
    ``mean_present``."""
    ranks = np.arange(1, num_classes + 1, dtype=np.float64)
    low, high = 0.01, 5.0
    for _ in range(60):
        beta = 0.5 * (low + high)
        if (top * ranks**-beta).sum() > mean_present:
            low = beta
        else:
            high = beta
    return top * ranks**-beta


def tail(x_thr, mu, sigma):
    """P(logit > x_thr) under N(mu, sigma)."""
    return ndtr((mu - x_thr) / sigma)


def draw_tail(rng, x_thr, mu, sigma):
    """Logits drawn from N(mu, sigma) conditioned on exceeding ``x_thr``
    (arrays of one value per draw)."""
    u = rng.random(len(x_thr))
    return mu + sigma * -ndtri(u * ndtr((x_thr - mu) / -sigma))


# ------------------------------------------------------- the head's pass
class HeadPass:
    """One rank's pass: running K-th best logit of every class.

    ``best`` holds each class's K best logits so far (``-inf`` padding);
    the threshold of a chunk is ``max(floor, K-th best)`` at its start.
    """

    def __init__(self, model, k, floor, rng, keep=False):
        self.model, self.k, self.rng, self.keep = model, k, rng, keep
        self.x_floor = logit(floor) if floor > 0 else -np.inf
        self.best = np.full((model.num_classes, k), -np.inf)
        self.kept = []  # (image, class, logit, object) per chunk when keep
        self.present = []  # (image, class, instances) when keep

    def threshold(self):
        return np.maximum(self.x_floor, self.best.min(axis=1))

    def _presence(self, images):
        m = self.model
        present = self.rng.random((m.num_classes, len(images))) < \
            m.pi[:, None]
        instances = np.where(
            present, 1 + self.rng.poisson(m.instances_mean, present.shape), 0)
        if self.keep:
            c, j = np.nonzero(instances)
            self.present.append((images[j], c, instances[c, j]))
        return instances

    def _draw(self, x_thr, images, instances):
        """Candidates above ``x_thr`` (C,) in the images of a chunk:
        (image, class, logit, object) arrays."""
        m, rng = self.model, self.rng
        obj = m.obj_proposals * instances
        xt = np.broadcast_to(x_thr[:, None], obj.shape)
        n_bg = rng.binomial(m.proposals - obj,
                            m.nms_keep * tail(xt, m.mu[:, None], m.sigma))
        n_obj = rng.binomial(obj, m.nms_keep * tail(xt, m.obj_mu, m.obj_sigma))
        parts = []
        for counts, mu, sigma, is_obj in ((n_bg, m.mu[:, None], m.sigma, 0),
                                          (n_obj, m.obj_mu, m.obj_sigma, 1)):
            c, j = np.nonzero(counts)
            reps = counts[c, j]
            c, j = np.repeat(c, reps), np.repeat(j, reps)
            mus = np.broadcast_to(mu, counts.shape)[c, j]
            parts.append((images[j], c,
                          draw_tail(rng, x_thr[c], mus, sigma),
                          np.full(len(c), is_obj, np.int8)))
        return [np.concatenate(a) for a in zip(*parts)]

    def _cap_per_image(self, image, cls, x, obj):
        """The head keeps at most K detections of a class per image."""
        order = np.lexsort((-x, cls, image))
        image, cls, x, obj = image[order], cls[order], x[order], obj[order]
        key = image.astype(np.int64) * self.model.num_classes + cls
        first = np.searchsorted(key, key, side='left')
        keep = np.arange(len(key)) - first < self.k
        return image[keep], cls[keep], x[keep], obj[keep]

    def _merge(self, cls, x):
        """Add logits to ``best`` (the K best per class)."""
        counts = np.bincount(cls, minlength=self.model.num_classes)
        width = int(counts.max()) if len(cls) else 0
        if width == 0:
            return
        order = np.argsort(cls, kind='stable')
        cls, x = cls[order], x[order]
        col = np.arange(len(cls)) - np.searchsorted(cls, cls, side='left')
        new = np.full((self.model.num_classes, width), -np.inf)
        new[cls, col] = x
        both = np.concatenate([self.best, new], axis=1)
        self.best = np.partition(both, width, axis=1)[:, width:]

    def chunk(self, images):
        """Process some images; returns per-image (upper, lower) counts."""
        x_start = self.threshold()
        instances = self._presence(images)
        image, cls, x, obj = self._draw(x_start, images, instances)
        if self.model.proposals > self.k:
            image, cls, x, obj = self._cap_per_image(image, cls, x, obj)
        self._merge(cls, x)
        # one image: its count against the start threshold is exact
        above_end = x > self.threshold()[cls] if len(images) > 1 else \
            np.ones(len(x), bool)
        if self.keep:
            self.kept.append((image, cls, x, obj))
        index = np.searchsorted(images, image)
        upper = np.bincount(index, minlength=len(images))
        lower = np.bincount(index[above_end], minlength=len(images))
        return upper, lower


def chunks(num_images, eps):
    """Image ranges: single images first, then 2% (``eps``) of the pass so
    far."""
    start = 0
    while start < num_images:
        size = 1 if start < FIRST_EXACT else max(1, int(eps * start))
        yield start, min(num_images, start + size)
        start += size


def run_pass(model, num_images, k, floor, rng, eps=0.02, keep=False):
    """A rank's pass over ``num_images``: per-image (upper, lower) counts,
    and the head (its candidates when ``keep``)."""
    head = HeadPass(model, k, floor, rng, keep)
    upper = np.zeros(num_images, np.int64)
    lower = np.zeros(num_images, np.int64)
    for a, b in chunks(num_images, eps):
        upper[a:b], lower[a:b] = head.chunk(np.arange(a, b))
    return upper, lower, head


# ------------------------------------------------------ closed-form check
def expected_iid(k, images, per_image):
    """Exact expectation for i.i.d. scores: image j (N scores before it)
    emits all of its m scores while N < K, then m K / (N + 1)."""
    before = np.arange(images, dtype=np.float64) * per_image
    return float(np.where(before < k, per_image,
                          per_image * k / (before + 1)).sum())


def closed_form_check(rng, eps):
    """Simulated emission of i.i.d. scores (256 classes as replicates)
    against the closed form, for 1 and 20 scores per image."""
    rows = []
    for k, images, per_image in ((50, 5000, 1), (50, 500, 20)):
        model = ScoreModel(256, proposals=per_image, iid=True)
        upper, lower, _ = run_pass(model, images, k, 0.0, rng, eps)
        n = images * per_image
        rows.append(dict(k=k, n=n, per_image=per_image,
                         upper=upper.sum() / 256, lower=lower.sum() / 256,
                         exact=expected_iid(k, images, per_image),
                         approx=k * (1 + math.log(n / k))))
    return rows


def print_check(rows, tolerance=0.03):
    print('Closed-form check (i.i.d. scores, 256 classes as replicates; '
          'simulated mean per class, bracket lower..upper):')
    ok = True
    for r in rows:
        inside = r['lower'] * (1 - tolerance) <= r['exact'] <= \
            r['upper'] * (1 + tolerance)
        ok &= inside
        print(f"  K={r['k']} n={r['n']} m={r['per_image']}: simulated "
              f"{r['lower']:.1f}..{r['upper']:.1f}, exact expectation "
              f"{r['exact']:.1f}, K(1+ln(n/K)) {r['approx']:.1f}: "
              f"{'ok' if inside else 'OFF'}")
    print(f'  closed-form check: {"passed" if ok else "FAILED"}')
    return ok


# ------------------------------------------------- part 1: full scale
def rank_images(num_images, world_size):
    """Images per rank (DistributedSampler pads to equal shares)."""
    return -(-num_images // world_size)


def simulate_ranks(args, rng):
    """Per-rank per-image (upper, lower) emission at full scale."""
    model = ScoreModel(pos_per_image=args.pos_per_image,
                       proposals=args.proposals,
                       obj_proposals=args.obj_proposals,
                       nms_keep=args.nms_keep)
    classes = np.arange(0, LVIS_CLASSES, args.class_stride)
    sub = model.subset(classes)
    n = rank_images(args.images, args.ranks)
    results = []
    for rank in range(args.ranks):
        start = time.perf_counter()
        upper, lower, head = run_pass(sub, n, args.k, args.floor, rng)
        scale = LVIS_CLASSES / len(classes)
        results.append((upper * scale, lower * scale))
        print(f'  rank {rank}: {time.perf_counter() - start:.1f} s, '
              f'{upper.sum() * scale / 1e6:.1f}M emitted (upper), '
              f'classes with K kept: '
              f'{int(np.isfinite(head.best.min(1)).sum())}/{len(classes)}',
              flush=True)
    return results


def window_means(per_image):
    """Mean per image: first 10, at 1% (1-2%), at 10% (10-11%), last 1%,
    whole pass."""
    n = len(per_image)

    def window(a, b):
        a, b = int(a), max(int(a) + 1, int(b))
        return float(per_image[a:b].mean())

    return dict(first10=window(0, 10), at1=window(0.01 * n, 0.02 * n),
                at10=window(0.10 * n, 0.11 * n), last1=window(0.99 * n, n),
                mean=float(per_image.mean()))


def report_emission(results, args):
    print(f'\nDetections emitted by the head (simulated, full scale: '
          f'{args.images} images on {args.ranks} ranks, '
          f'{rank_images(args.images, args.ranks)} each, K={args.k}, '
          f'floor {args.floor:g}, {args.proposals} proposals, NMS keep '
          f'{args.nms_keep:g}; lower / upper bound):')
    summary = {}
    for bound, index in (('lower', 1), ('upper', 0)):
        per_image = np.mean([r[index] for r in results], axis=0)
        totals = np.array([r[index].sum() for r in results])
        summary[bound] = dict(window_means(per_image), rank_mean=totals.mean(),
                              rank_min=totals.min(), rank_max=totals.max(),
                              total=totals.sum())
    lo, up = summary['lower'], summary['upper']
    for key, label in (('first10', 'images 1-10'),
                       ('at1', 'at 1% of the pass'),
                       ('at10', 'at 10%'), ('last1', 'last 1%'),
                       ('mean', 'mean over the pass')):
        print(f'  per image, {label:<20} {lo[key]:12,.0f} .. {up[key]:12,.0f}')
    print(f"  per rank total          {lo['rank_mean'] / 1e6:10.1f}M .. "
          f"{up['rank_mean'] / 1e6:.1f}M (ranks {up['rank_min'] / 1e6:.1f}M-"
          f"{up['rank_max'] / 1e6:.1f}M, upper)")
    print(f"  all ranks               {lo['total'] / 1e6:10.1f}M .. "
          f"{up['total'] / 1e6:.1f}M")
    n = rank_images(args.images, args.ranks) * args.proposals
    iid = args.k * (1 + math.log(n / args.k))
    print(f'  i.i.d. closed form per class per rank: K(1+ln(n/K)) = '
          f'{iid:,.0f} (n = all proposals of a rank; x {LVIS_CLASSES} '
          f'classes = {LVIS_CLASSES * iid / 1e6:.1f}M)')
    return summary


# ------------------------------------------------- part 2: the metric
def measure(fn):
    """(seconds, peak RSS increase in MiB, result) of ``fn()``: the peak
    measurement of ``bench_proco_loss.py``, keeping what ``fn`` returns."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_proco_loss import measure as measure_call
    out = []
    seconds, peak = measure_call(lambda: out.append(fn()))
    return seconds, peak, out[0]


def soft_mask(rng, size=28):
    """A 28x28 mask-head-like probability map: a noisy ellipse."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    a, b = rng.uniform(0.6, 1.0, 2)
    field = 1.2 - (xx / a)**2 - (yy / b)**2
    field += 0.1 * rng.standard_normal((size, size))
    return expit(4 * field).astype(np.float32)


def random_boxes(rng, n):
    """x1, y1, x2, y2 boxes: sides log-uniform in 16-400 px, inside the
    image."""
    w = np.exp(rng.uniform(np.log(16), np.log(400), n))
    h = np.clip(w * np.exp(rng.uniform(-0.7, 0.7, n)), 8, HEIGHT - 1)
    w = np.minimum(w, WIDTH - 1)
    x1, y1 = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
    return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)


def paste_masks(rng, boxes, device='cpu'):
    """28x28 soft masks pasted into their boxes on a 480x640 canvas and
    thresholded at 0.5, as MMDetection's mask head does (bilinear
    ``grid_sample``); ``(n, H, W)`` bool on the CPU."""
    import torch
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
        _do_paste_mask
    masks = torch.from_numpy(np.stack([soft_mask(rng) for _ in boxes]))
    pasted, _ = _do_paste_mask(masks[:, None].to(device),
                               torch.from_numpy(boxes).to(device), HEIGHT,
                               WIDTH, skip_empty=False)
    return (pasted >= 0.5).cpu().numpy()


def time_encoding(rng, device, n=400):
    """Seconds per mask of ``encode_mask_results`` (the head's encoding of
    each chunk) and of the paste, on ``n`` masks."""
    from mmdet.structures.mask import encode_mask_results
    boxes = random_boxes(rng, n)
    start = time.perf_counter()
    masks = paste_masks(rng, boxes, device)
    paste = (time.perf_counter() - start) / n
    start = time.perf_counter()
    rles = encode_mask_results(masks)
    encode = (time.perf_counter() - start) / n
    size = np.mean([len(r['counts']) for r in rles])
    return dict(encode_s=encode, paste_s=paste, rle_bytes=float(size))


def ellipse_polygon(box, vertices=16):
    x1, y1, x2, y2 = (float(v) for v in box)
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)],
                    1).reshape(-1).round(2).tolist()


def lvis_categories(model):
    cats, start = [], 0
    for freq, count in GROUPS:
        for c in range(start, start + count):
            cats.append(dict(id=c + 1, name=f'class_{c}', frequency=freq,
                             image_count=max(1, int(model.pi[c] * 1e5)),
                             synonyms=[f'class_{c}']))
        start += count
    return cats


def synthetic_lvis(model, num_images, present, rng, neg_per_image=8,
                   not_exhaustive=0.1):
    """An LVIS v1 annotation dict with the ground truth of ``present``
    ((image, class, instances) arrays): ellipse polygons in random boxes,
    ``neg_per_image`` random absent classes per image, and each present
    class not exhaustively annotated with probability ``not_exhaustive``.
    Returns the dict and {(image, class): [boxes]}."""
    image, cls, inst = present
    gt_boxes, anns = {}, []
    boxes = random_boxes(rng, int(inst.sum()))
    pos = {i: set() for i in range(num_images)}
    for i, c, n in zip(image.tolist(), cls.tolist(), inst.tolist()):
        pos[i].add(c)
        for box in boxes[len(anns):len(anns) + n]:
            gt_boxes.setdefault((i, c), []).append(box)
            x1, y1, x2, y2 = (float(v) for v in box)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                             category_id=c + 1,
                             bbox=[x1, y1, x2 - x1, y2 - y1],
                             area=math.pi * (x2 - x1) * (y2 - y1) / 4,
                             segmentation=[ellipse_polygon(box)]))
    images = []
    for i in range(num_images):
        neg = [int(c) + 1 for c in rng.choice(model.num_classes,
                                              neg_per_image, replace=False)
               if c not in pos[i]]
        nel = [c + 1 for c in sorted(pos[i]) if rng.random() < not_exhaustive]
        images.append(dict(id=i + 1, height=HEIGHT, width=WIDTH,
                           coco_url=f'val2017/{i + 1:012d}.jpg',
                           neg_category_ids=neg,
                           not_exhaustive_category_ids=nel))
    return dict(images=images, annotations=anns,
                categories=lvis_categories(model)), gt_boxes


def mask_pool(rng, size):
    """``size`` (box, RLE) pairs of pasted 28x28 masks, the detections'
    masks (encoding each detection's own mask is timed separately)."""
    from mmdet.structures.mask import encode_mask_results
    boxes = random_boxes(rng, size)
    rles = []
    for start in range(0, size, 256):
        rles += encode_mask_results(
            paste_masks(rng, boxes[start:start + 256]))
    return boxes, rles


def gt_rles(gt_boxes):
    """RLE of each ground-truth ellipse: the masks of the object
    detections (a detector's good masks match their object)."""
    from pycocotools import mask as mask_utils
    return {
        key: [mask_utils.frPyObjects([ellipse_polygon(b)], HEIGHT, WIDTH)[0]
              for b in boxes]
        for key, boxes in gt_boxes.items()
    }


def samples_of(candidates, gt_boxes, gt_masks, pool, rng):
    """Data samples, one per image, from the kept candidates."""
    import torch
    image, cls, x, obj = candidates
    order = np.argsort(image, kind='stable')
    image, cls, x, obj = image[order], cls[order], x[order], obj[order]
    bounds = np.searchsorted(image, np.arange(image.max() + 2))
    pool_boxes, pool_rles = pool
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        pick = rng.integers(0, len(pool_rles), b - a)
        boxes = pool_boxes[pick].copy()
        # each detection its own RLE string, as the head's encoding gives
        rles = [dict(size=pool_rles[p]['size'],
                     counts=bytes(bytearray(pool_rles[p]['counts'])))
                for p in pick]
        for j in np.flatnonzero(obj[a:b]):
            key = (i, int(cls[a + j]))
            which = rng.integers(len(gt_boxes[key]))
            jitter = rng.normal(0, 2, 4).astype(np.float32)
            boxes[j] = gt_boxes[key][which] + jitter
            rles[j] = gt_masks[key][which]
        yield dict(img_id=i + 1, ori_shape=(HEIGHT, WIDTH),
                   pred_instances=dict(
                       bboxes=torch.from_numpy(boxes),
                       scores=torch.from_numpy(expit(x[a:b]).astype(
                           np.float32)),
                       labels=torch.from_numpy(cls[a:b].astype(np.int64)),
                       masks=rles))


def _timed(record, name, fn):
    """``fn`` that adds its time to ``record[name]``."""

    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record[name] = record.get(name, 0.0) + time.perf_counter() - start

    return wrapped


def scaled_inputs(args, scale, rng):
    """The scaled pass's candidates, annotation file and mask material."""
    model = ScoreModel(pos_per_image=args.pos_per_image,
                       proposals=args.proposals,
                       obj_proposals=args.obj_proposals,
                       nms_keep=args.nms_keep)
    images, k = round(LVIS_IMAGES / scale), max(1, round(args.k / scale))
    _, _, head = run_pass(model, images, k, args.floor, rng, keep=True)
    candidates = [np.concatenate(a) for a in zip(*head.kept)]
    present = [np.concatenate(a) for a in zip(*head.present)]
    content, gt_boxes = synthetic_lvis(model, images, present, rng,
                                       args.neg_per_image)
    return dict(images=images, k=k, candidates=candidates, content=content,
                gt_boxes=gt_boxes, gt_masks=gt_rles(gt_boxes),
                pool=mask_pool(rng, args.mask_pool))


def build_metric(ann_file, k, scale):
    from mmengine.logging import MMLogger
    MMLogger.get_instance('bench_lvis_validation', log_level='WARNING')
    import mmlt  # noqa: F401  (registers; numpy aliases for lvis)
    from mmlt.integrations.mmdet import LVISFixedMetric
    metric = LVISFixedMetric(
        ann_file=ann_file, metric=['bbox', 'segm'],
        ap_types=('standard', 'fixed', 'pool'), max_dets_per_img=300,
        standard_score_thr=1e-4, dets_per_class=k,
        eval_chunk_dets=max(1, round(500000 / scale)), out_dir=False)
    for store in metric._stores.values():  # pruned as at full scale
        store.prune_at = max(1, round(store.prune_at / scale))
    return metric


def gathered_sizes(metric):
    """Pickle sizes (what collect_results moves) and unpickle seconds."""
    for store in metric._stores.values():
        store.detections()  # prune, as evaluate's gather sees them
    out = {}
    for name, obj in (('bbox', metric._stores['bbox']),
                      ('segm', metric._stores['segm']),
                      ('standard', metric.results)):
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        start = time.perf_counter()
        pickle.loads(blob)
        out[f'{name}_bytes'] = len(blob)
        out[f'{name}_load_s'] = time.perf_counter() - start
    out['budget_dets'] = len(metric._stores['bbox'])
    out['standard_dets'] = int(sum(len(r[1]['scores'])
                                   for r in metric.results))
    return out


def kth_best_time(k, rng, world_size=8, classes=LVIS_CLASSES):
    """Seconds of ``kth_best_scores`` over ``world_size`` ranks' summaries
    of K per class each (what every rank computes in _share_budgets)."""
    from mmlt.integrations.mmdet.lvis_fixed_ap import kth_best_scores
    summaries = [(np.repeat(np.arange(classes), k),
                  rng.random(classes * k).astype(np.float32))
                 for _ in range(world_size)]
    start = time.perf_counter()
    kth_best_scores(summaries, k, classes)
    return time.perf_counter() - start, len(pickle.dumps(summaries[0]))


def metric_run(args, scale):
    """Everything of one scale, in this process; returns the figures."""
    rng = np.random.default_rng(args.seed + scale)
    start = time.perf_counter()
    data = scaled_inputs(args, scale, rng)
    prepared = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = os.path.join(tmp, 'lvis_v1_val_synthetic.json')
        with open(ann_file, 'w') as f:
            json.dump(data['content'], f)
        metric = build_metric(ann_file, data['k'], scale)
        timing = {}
        process = _timed(timing, 'process', metric.process)

        def feed():  # samples made one at a time; only process is timed
            return sum(
                process({}, [sample]) or
                len(sample['pred_instances']['scores'])
                for sample in samples_of(data['candidates'], data['gt_boxes'],
                                         data['gt_masks'], data['pool'], rng))

        _, process_mb, dets = measure(feed)
        process_s = timing['process']
        del data['candidates']
        sizes = gathered_sizes(metric)
        parts = {}
        metric._standard_metrics = _timed(parts, 'standard',
                                          metric._standard_metrics)
        metric._budget_metrics = _timed(parts, 'budget',
                                        metric._budget_metrics)
        eval_s, eval_mb, values = measure(
            lambda: metric.evaluate(data['images']))
    kth_s, summary_bytes = kth_best_time(data['k'], rng)
    return dict(scale=scale, images=data['images'], k=data['k'],
                annotations=len(data['content']['annotations']),
                detections=dets, process_s=process_s, process_mb=process_mb,
                eval_s=eval_s, eval_mb=eval_mb,
                standard_s=parts.get('standard', 0.0),
                budget_s=parts.get('budget', 0.0), kth_s=kth_s,
                summary_bytes=summary_bytes, prepare_s=prepared,
                segm_fixed_ap=values.get('lvis/segm_fixed_AP'), **sizes)


def run_scale_subprocess(args, scale):
    """``metric_run`` in a fresh process (its own peak memory)."""
    argv = [sys.executable, os.path.abspath(__file__), '--worker-scale',
            str(scale)] + sys.argv[1:]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    out = subprocess.run(argv, env=env, capture_output=True, text=True,
                         cwd=REPO_ROOT)
    if out.returncode:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
        raise RuntimeError(f'scale 1/{scale} failed')
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------- extrapolation, timeout
def extrapolate(runs, key, to=1.0):
    """``key`` at fraction ``to`` of LVIS: a least-squares line in the
    fraction over the measured scales, and the largest scale's value times
    ``to / fraction``; returns (line, proportional)."""
    f = np.array([1.0 / r['scale'] for r in runs])
    y = np.array([float(r[key]) for r in runs])
    proportional = float(y[np.argmax(f)] * to / f.max())
    if len(runs) == 1:
        return proportional, proportional
    slope, intercept = np.polyfit(f, y, 1)
    return float(intercept + slope * to), proportional


def report_metric(runs, encoding):
    print('\nMetric side (measured on scaled LVIS: 1/s of the images, K/s; '
          'one process):')
    print(f"  {'scale':>6} {'images':>6} {'K':>5} {'dets fed':>9} "
          f"{'us/det':>7} {'budget':>8} {'bbox MB':>8} {'segm MB':>8} "
          f"{'std MB':>7} {'eval s':>7} {'std s':>6} {'fixed s':>7} "
          f"{'peak MB proc':>12} {'peak MB eval':>12}")
    for r in runs:
        print(f"  1/{r['scale']:<4} {r['images']:>6} {r['k']:>5} "
              f"{r['detections']:>9} "
              f"{1e6 * r['process_s'] / r['detections']:>7.1f} "
              f"{r['budget_dets']:>8} {r['bbox_bytes'] / 2**20:>8.1f} "
              f"{r['segm_bytes'] / 2**20:>8.1f} "
              f"{r['standard_bytes'] / 2**20:>7.1f} {r['eval_s']:>7.1f} "
              f"{r['standard_s']:>6.1f} {r['budget_s']:>7.1f} "
              f"{r['process_mb'] or float('nan'):>12.0f} "
              f"{r['eval_mb'] or float('nan'):>12.0f}")
    print(f"  mask encoding (measured): {1e6 * encoding['encode_s']:.0f} us "
          f"per mask (encode_mask_results, 640x480), paste "
          f"{1e6 * encoding['paste_s']:.0f} us per mask on "
          f"{encoding['device']}, RLE {encoding['rle_bytes']:.0f} bytes")


def full_scale(runs, emission, encoding, args):
    """Full-scale figures: extrapolated (metric) and simulated (passes)."""
    keys = ('eval_s', 'standard_s', 'budget_s', 'eval_mb', 'process_mb',
            'bbox_bytes', 'segm_bytes', 'standard_bytes', 'bbox_load_s',
            'segm_load_s', 'standard_load_s', 'budget_dets', 'kth_s',
            'summary_bytes')
    fits = {key: extrapolate(runs, key) for key in keys}
    # the line where it is positive; the timeout takes the larger of the two
    full = {key: line if line > 0 else prop
            for key, (line, prop) in fits.items()}
    bound = {key: max(fit) for key, fit in fits.items()}
    per_det = np.mean([r['process_s'] / r['detections'] for r in runs])
    up = emission['upper']
    full['rank_dets'] = up['rank_mean']
    full['process_rank_s'] = up['rank_mean'] * per_det
    full['encode_rank_s'] = up['rank_mean'] * encoding['encode_s']
    full['spread_s'] = (up['rank_max'] - up['rank_min']) * (
        per_det + encoding['encode_s'])
    full['load_s'] = sum(full[f'{n}_load_s'] for n in ('bbox', 'segm',
                                                       'standard'))
    full['rank0_s'] = full['load_s'] + full['eval_s']
    full['wait_s'] = full['rank0_s'] + full['spread_s']
    full['wait_bound_s'] = sum(bound[f'{n}_load_s'] for n in (
        'bbox', 'segm', 'standard')) + bound['eval_s'] + full['spread_s']
    hours = args.safety * full['wait_bound_s'] / 3600
    full['timeout_h'] = max(1.0, math.ceil(hours * 2) / 2)
    return full


def report_full(full, args):
    gb = 2**30
    print(f'\nFull scale, LVIS v1 val ({LVIS_IMAGES} images, K={args.k}; '
          f'extrapolated linearly in the fraction of the data set from the '
          f'scales above, unless marked simulated):')
    rows = [
        ('budget per IoU type',
         f"{full['budget_dets'] / 1e6:.2f}M detections"),
        ('gathered budgets (pickle)',
         f"bbox {full['bbox_bytes'] / gb:.2f} GB, segm "
         f"{full['segm_bytes'] / gb:.2f} GB"),
        ('gathered standard results (pickle)',
         f"{full['standard_bytes'] / gb:.2f} GB"),
        ('_share_budgets summary per rank (pickle)',
         f"{full['summary_bytes'] / gb:.2f} GB; kth_best_scores "
         f"{full['kth_s']:.0f} s"),
        ('rank 0: unpickle the gathered results', f"{full['load_s']:.0f} s"),
        ('rank 0: evaluate (merge, standard, fixed, pool)',
         f"{full['eval_s']:.0f} s (standard {full['standard_s']:.0f} s, "
         f"AP-fixed/pool {full['budget_s']:.0f} s)"),
        ('rank 0: peak memory of evaluate (over what it holds)',
         f"{full['eval_mb'] / 1024:.1f} GB"),
        ('a process: peak memory while processing (1 process)',
         f"{full['process_mb'] / 1024:.1f} GB"),
        ('per rank: detections emitted (simulated, upper)',
         f"{full['rank_dets'] / 1e6:.1f}M"),
        ('per rank: metric.process + RLE encoding (simulated x measured)',
         f"{full['process_rank_s'] / 3600:.2f} h + "
         f"{full['encode_rank_s'] / 3600:.2f} h"),
        ('spread of the ranks\' pass (simulated x measured)',
         f"{full['spread_s']:.0f} s"),
        ('others wait: rank 0 after the gather + spread',
         f"{full['wait_s']:.0f} s = {full['wait_s'] / 60:.0f} min (line); "
         f"{full['wait_bound_s'] / 60:.0f} min (larger of line and "
         f"proportional)"),
        (f'dist timeout (x{args.safety:g}, rounded up to half hours)',
         f"{full['timeout_h']:g} h"),
    ]
    for name, value in rows:
        print(f'  {name:<58} {value}')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=LVIS_IMAGES)
    p.add_argument('--ranks', type=int, default=8)
    p.add_argument('--k', type=int, default=10000, help='dets_per_class')
    p.add_argument('--floor', type=float, default=1e-7)
    p.add_argument('--proposals', type=int, default=1000)
    p.add_argument('--obj-proposals', type=int, default=10,
                   help='proposals per instance with an object score')
    p.add_argument('--pos-per-image', type=float, default=3.5)
    p.add_argument('--neg-per-image', type=int, default=8)
    p.add_argument('--nms-keep', type=float, default=1.0)
    p.add_argument('--class-stride', type=int, default=4,
                   help='simulate every n-th class at full scale, x n')
    p.add_argument('--scales', type=int, nargs='+', default=[64, 32],
                   help='metric runs on 1/s of LVIS (K/s)')
    p.add_argument('--mask-pool', type=int, default=1024)
    p.add_argument('--safety', type=float, default=3.0)
    p.add_argument('--device', default='cpu', help='where masks are pasted')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--worker-scale', type=int, default=None,
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker_scale is not None:
        print(json.dumps(metric_run(args, args.worker_scale)))
        return 0
    rng = np.random.default_rng(args.seed)
    ok = print_check(closed_form_check(rng, 0.02))
    print(f'\nSimulating the head at full scale (every {args.class_stride}'
          f'-th class, x{args.class_stride}):', flush=True)
    emission = report_emission(simulate_ranks(args, rng), args)
    encoding = dict(time_encoding(rng, args.device), device=args.device)
    runs = []
    for scale in args.scales:
        print(f'  metric at 1/{scale} ...', flush=True)
        runs.append(run_scale_subprocess(args, scale))
    report_metric(runs, encoding)
    report_full(full_scale(runs, emission, encoding, args), args)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
