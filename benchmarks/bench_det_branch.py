"""Training-step overhead of the contrastive RoI branch in Mask R-CNN.

Run from the repository root (CPU; about 3-5 minutes with the defaults)::

    python benchmarks/bench_det_branch.py                    # ProCo vs none
    python benchmarks/bench_det_branch.py --variants proco bcl supcon
    python benchmarks/bench_det_branch.py --reps 3 --size 192   # quicker

It builds the Mask R-CNN R50-FPN of
``configs/lvis/mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py`` (1203
LVIS classes, logit-adjusted RoI classifier, projection 1024-1024-128) and
the same model with ``contrast_loss=None`` ("none": identical detector, no
branch), plus the BCL/SupCon configs if asked, all from the same seed, and
times full training steps (``model.train_step``: data preprocessor, forward,
backward, SGD step) on one batch of ``--batch`` random ``--size`` px images
with ``--gts`` random boxes and masks per image (random weights, no
pretrained backbone: the step's cost does not depend on the values). The
contrastive branch costs the projection MLP on the foreground RoIs, the
loss (ProCo: the vMF estimator update and the closed-form logits over 1203
classes) and their backward passes; inference is unchanged.

Steps are interleaved (rotating the order every repetition), so that load
from other processes hits all variants alike; the reported overhead is the
median over repetitions of (variant / none) of the same repetition, and the
ratio of the medians. A low-noise second estimate times the branch alone
(``bbox_head.loss_contrast`` forward + backward on the foreground-RoI
features of a real step, and on the maximum ``2 x 512 x 0.25 = 256``
foreground RoIs of MMDetection's sampler): ``1 + branch / step_none``.
Target: at most 5% added.
"""
import argparse
import statistics
import sys
import time
from os import path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

CONFIGS = {
    'none': 'configs/lvis/mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py',
    'proco':
    'configs/lvis/mask-rcnn_r50_fpn_proco_sample1e-3_ms-1x_lvis-v1.py',
    'bcl': 'configs/lvis/mask-rcnn_r50_fpn_bcl_sample1e-3_ms-1x_lvis-v1.py',
    'supcon':
    'configs/lvis/mask-rcnn_r50_fpn_supcon_sample1e-3_ms-1x_lvis-v1.py',
}


def lvis_like_counts(num_classes):
    """A long-tailed instance prior (50,000 down to 1 instance)."""
    import torch
    ranks = torch.arange(num_classes, dtype=torch.float64)
    return torch.round(5e4 * (1 / 5e4)**(ranks / (num_classes - 1)))


def build(variant):
    """The detector of a variant and its SGD optim wrapper."""
    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS, DefaultScope

    import mmlt.integrations.mmdet  # noqa: F401

    cfg = Config.fromfile(osp.join(REPO_ROOT, CONFIGS[variant]))
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None  # no download; random weights
    if variant == 'none':
        model_cfg.roi_head.bbox_head.contrast_loss = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model_cfg)
    counts = lvis_like_counts(model.roi_head.bbox_head.num_classes)
    for module in model.modules():
        if callable(getattr(module, 'set_class_counts', None)):
            module.set_class_counts(counts)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    return model, OptimWrapper(optimizer)


def make_batch(batch, size, gts, num_classes):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=batch,
        image_shapes=[(3, size, size)] * batch,
        num_items=[gts] * batch,
        num_classes=num_classes,
        with_mask=True)


def count_foreground(model):
    """Wrap loss_contrast to record how many RoIs it sees per call."""
    bbox_head = model.roi_head.bbox_head
    seen = []
    original = bbox_head.loss_contrast

    def counting(fg_shared_feats, fg_labels, *args, **kwargs):
        seen.append(int(fg_labels.numel()))
        return original(fg_shared_feats, fg_labels, *args, **kwargs)

    bbox_head.loss_contrast = counting
    return seen


def time_branch(model, num_rois, reps):
    """Median seconds of the branch alone: loss_contrast fwd + bwd."""
    import torch
    bbox_head = model.roi_head.bbox_head
    generator = torch.Generator().manual_seed(0)
    feats = torch.relu(
        torch.randn(
            num_rois, bbox_head.fc_out_channels, generator=generator))
    labels = torch.randint(
        0, bbox_head.num_classes, (num_rois, ), generator=generator)
    # IoU weights where the RoI head passes them (contrast_iou_weight).
    roi_head = model.roi_head
    weights = None
    if getattr(roi_head, 'contrast_iou_weight', False):
        low = roi_head.contrast_iou_thr
        weights = low + (1 - low) * torch.rand(num_rois, generator=generator)
    times = []
    for _ in range(reps):
        feats_ = feats.clone().requires_grad_()
        start = time.perf_counter()
        loss = bbox_head.loss_contrast(feats_, labels,
                                       weights)['loss_contrast']
        loss.backward()
        times.append(time.perf_counter() - start)
    bbox_head.zero_grad(set_to_none=True)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['proco'],
                        choices=['proco', 'bcl', 'supcon'])
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--gts', type=int, default=40)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--branch-reps', type=int, default=20,
                        help='repetitions of the branch-alone timing')
    args = parser.parse_args(argv)

    import torch

    import mmlt  # noqa: F401
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = ['none'] + list(args.variants)
    models = {name: build(name) for name in variants}
    num_classes = models['none'][0].roi_head.bbox_head.num_classes
    data = make_batch(args.batch, args.size, args.gts, num_classes)
    foreground = {
        name: count_foreground(models[name][0])
        for name in variants if name != 'none'
    }

    def step(name):
        model, optim_wrapper = models[name]
        start = time.perf_counter()
        model.train_step(data, optim_wrapper)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        for name in variants:
            step(name)
    times = {name: [] for name in variants}
    for rep in range(args.reps):
        shift = rep % len(variants)
        for name in variants[shift:] + variants[:shift]:
            times[name].append(step(name))
        print(f'rep {rep + 1}/{args.reps}: ' + ', '.join(
            f'{name} {times[name][-1]:.2f} s' for name in variants),
              flush=True)

    none_median = statistics.median(times['none'])
    print(f'\nMask R-CNN R50-FPN, {num_classes} classes, batch {args.batch} '
          f'x {args.size} px, {args.gts} boxes/image, '
          f'{torch.get_num_threads()} threads, {args.reps} repetitions')
    print(f'none (no branch): median step {none_median:.3f} s')
    for name in args.variants:
        paired = statistics.median(
            t / base for t, base in zip(times[name], times['none']))
        median = statistics.median(times[name])
        fg = statistics.median(foreground[name])
        model = models[name][0]
        branch = time_branch(model, int(fg), args.branch_reps)
        branch_max = time_branch(model, 256, args.branch_reps)
        print(f'{name}: median step {median:.3f} s; step ratio '
              f'{name}/none = {paired:.3f} (paired median), '
              f'{median / none_median:.3f} (ratio of medians); '
              f'{fg:.0f} foreground RoIs per step; branch alone '
              f'{branch * 1e3:.1f} ms -> {1 + branch / none_median:.3f}, '
              f'with 256 RoIs {branch_max * 1e3:.1f} ms -> '
              f'{1 + branch_max / none_median:.3f}')


if __name__ == '__main__':
    main()
