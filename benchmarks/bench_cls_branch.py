"""Training-step overhead of the contrastive branch of ProCo and BCL.

Run from the repository root (CPU, one thread; about 3-4 minutes)::

    python benchmarks/bench_cls_branch.py               # 224 px, batch 4
    python benchmarks/bench_cls_branch.py --reps 4 --size 160   # quicker
    python benchmarks/bench_cls_branch.py --profile     # where time goes
    python benchmarks/bench_cls_branch.py --device cuda --batch 32 \
        --amp-dtype bfloat16 --json out.json          # on a GPU (the GPU kit)

It builds the models of ``configs/proco_r50_imagenetlt.py`` and
``configs/bcl_r50_imagenetlt.py`` (ResNet-50, cosine classifier, projection
2048-2048-1024, 1000 classes) and the same ProCo model with
``contrast_loss=None`` ("CE only": the classifier branch alone), and times a
full training step of each (``model.train_step``: data preprocessor, forward,
backward, SGD step) on the same three-view batch (``--batch`` images x 3
views at ``--size`` px, random uint8 pixels, a long-tailed class prior).
All three see the same 3-view input, so the backbone work is identical and
the difference is the branch: the projection MLP, the ProCo loss with its vMF
estimator update (or the BCL loss with its prototype MLP over the 1000
classifier rows), their backward passes and their parameters' SGD update.
Before every ProCo step the ``VMFWindowHook`` starts a new window (a swap of
the estimator's statistics, normally once per epoch: this charges it to
every step, a worst case).

The steps are interleaved (CE, ProCo, BCL, rotating the order every
repetition) so that load from other processes hits all variants alike; the
ratio is the median over repetitions of ProCo / CE (and BCL / CE) from the
same repetition, plus the ratio of the medians. On a shared machine these
move by a few percent from run to run; a second, low-noise estimate
times the head alone (``head.loss`` forward + backward on fixed features):
``1 + (head_ProCo - head_CE) / step_CE`` (it leaves out the SGD update of the
projector's 6.3M parameters, a few ms).
"""
import argparse
import statistics
import sys
import time
import types
from os import path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

IMAGENET_LT_CONFIGS = {
    'ce': 'configs/proco_r50_imagenetlt.py',  # with contrast_loss=None
    'proco': 'configs/proco_r50_imagenetlt.py',
    'bcl': 'configs/bcl_r50_imagenetlt.py',
}


def imagenet_lt_counts(num_classes):
    """A long-tailed prior like ImageNet-LT's (1280 down to 5 images)."""
    import torch
    ranks = torch.arange(num_classes, dtype=torch.float64)
    return torch.round(1280 * (5 / 1280)**(ranks / (num_classes - 1)))


DEVICE = 'cpu'
AMP = False


def autocast():
    import contextlib

    import torch
    if not AMP:
        return contextlib.nullcontext()
    if isinstance(AMP, str):  # --amp-dtype
        return torch.autocast(DEVICE, dtype=getattr(torch, AMP))
    return torch.autocast(
        DEVICE, dtype=torch.float16 if DEVICE == 'cuda' else torch.bfloat16)


def sync():
    import torch
    if DEVICE == 'cuda':
        torch.cuda.synchronize()


def build(variant):
    """The model of a variant, its SGD optim wrapper and its window hook."""
    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS, DefaultScope

    from mmlt.engine.hooks import VMFWindowHook

    cfg = Config.fromfile(osp.join(REPO_ROOT, IMAGENET_LT_CONFIGS[variant]))
    model_cfg = cfg.model.copy()
    if variant == 'ce':
        model_cfg.head.contrast_loss = None
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    counts = imagenet_lt_counts(model.head.num_classes)
    for module in model.modules():
        if callable(getattr(module, 'set_class_counts', None)):
            module.set_class_counts(counts)
    model.to(DEVICE).train()
    # A small lr: the random batch is seen again and again.
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    hook = VMFWindowHook()
    return model, OptimWrapper(optimizer), hook


def make_batch(batch_size, size, num_classes, views=3, seed=0):
    """pseudo_collate's layout: a list of views, each a list of samples."""
    import torch
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(seed)
    inputs = [[
        torch.randint(
            0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        for _ in range(batch_size)
    ] for _ in range(views)]
    labels = torch.randint(0, num_classes, (batch_size, ),
                           generator=generator)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return dict(inputs=inputs, data_samples=samples)


class Variant:
    """One model, its optimizer and the per-step work around it."""

    def __init__(self, name, batch):
        self.name = name
        self.model, self.optim_wrapper, self.hook = build(name)
        self.batch = batch
        self.window = 0
        self.has_estimator = bool(self.hook.estimators(self.model))
        self.runner = types.SimpleNamespace(
            model=self.model, train_loop=None, epoch=0)

    def step(self):
        if self.has_estimator:
            # What VMFWindowHook does at an epoch start, here every step.
            self.window += 1
            self.runner.epoch = self.window
            self.hook.before_train_epoch(self.runner)
        with autocast():
            log_vars = self.model.train_step(self.batch, self.optim_wrapper)
        return {k: float(v.detach()) for k, v in log_vars.items()}


def time_steps(variants, reps, warmup):
    """Interleaved step times: {name: [seconds per repetition]}."""
    for variant in variants:
        for _ in range(warmup):
            log_vars = variant.step()
        print(f'  warm-up {variant.name}: ' +
              ', '.join(f'{k}={v:.3f}' for k, v in log_vars.items()))
    times = {v.name: [] for v in variants}
    for rep in range(reps):
        shift = rep % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            sync()
            start = time.perf_counter()
            variant.step()
            sync()
            times[variant.name].append(time.perf_counter() - start)
        print(f'  rep {rep + 1}/{reps}: ' + ', '.join(
            f'{name} {t[-1]:.3f} s' for name, t in times.items()))
    return times


def head_inputs(batch_size, num_classes, device, seed=1):
    """Pooled 3-view features ``(3 B, 2048)`` and ``B`` labelled samples,
    both on ``device`` (``head.loss`` does not move them)."""
    import torch
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(3 * batch_size, 2048, generator=generator).relu()
    labels = torch.randint(0, num_classes, (batch_size, ),
                           generator=generator)
    samples = [
        DataSample().set_gt_label(int(y)).to(device) for y in labels
    ]
    return feats.to(device), samples


def time_heads(variants, batch_size, reps):
    """Head forward + backward on fixed pooled features (3 views)."""
    feats, samples = head_inputs(batch_size,
                                 variants[0].model.head.num_classes, DEVICE)
    times = {v.name: [] for v in variants}
    for rep in range(reps + 2):
        for variant in variants:
            x = feats.clone().requires_grad_(True)
            sync()
            start = time.perf_counter()
            with autocast():
                losses = variant.model.head.loss((x, ), samples)
                total = sum(v for k, v in losses.items()
                            if k.startswith('loss'))
            total.backward()
            sync()
            seconds = time.perf_counter() - start
            variant.model.zero_grad(set_to_none=True)
            if rep >= 2:  # the first two are warm-up
                times[variant.name].append(seconds)
    return times


def time_window_swap(variant, reps=5):
    """One estimator window swap plus the first parameter refresh after it."""
    import torch
    estimators = variant.hook.estimators(variant.model)
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        variant.window += 1
        for estimator in estimators:
            estimator.start_epoch(variant.window)
            estimator.vmf_parameters(torch.float32, slot=0)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def print_head_products(variants, batch_size):
    """The dtype of every matrix product of one head loss per variant."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from bench_proco_loss import product_dtypes
    feats, samples = head_inputs(batch_size,
                                 variants[0].model.head.num_classes, DEVICE)
    print('Matrix products of one head loss + backward (inputs, dtypes):')
    for variant in variants:

        def head_step():
            x = feats.clone().requires_grad_(True)
            with autocast():
                losses = variant.model.head.loss((x, ), samples)
                total = sum(v for k, v in losses.items()
                            if k.startswith('loss'))
            total.backward()
            variant.model.zero_grad(set_to_none=True)

        print(f'  {variant.name}: ' + ', '.join(product_dtypes(head_step)))


def profile_step(variant, rows=20):
    from torch.profiler import ProfilerActivity, profile
    variant.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        variant.step()
    print(f'\nProfile of one {variant.name} step (top {rows} by self CPU):')
    print(prof.key_averages().table(
        sort_by='self_cpu_time_total', row_limit=rows))


def write_json(path, steps, heads, swap, settings):
    """Step and head times (s) per variant, ratios to CE only, settings."""
    import json
    ratios = {
        name: dict(
            step_paired_median=statistics.median(
                a / b for a, b in zip(steps[name], steps['ce'])),
            head_only_estimate=1 + (statistics.median(heads[name]) -
                                    statistics.median(heads['ce'])) /
            statistics.median(steps['ce']))
        for name in steps if name != 'ce'
    }
    with open(path, 'w') as f:
        json.dump(dict(settings={k: v for k, v in settings.items()
                                 if k != 'json'},
                       step_s=steps, head_s=heads, window_swap_s=swap,
                       ratio_to_ce=ratios), f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=4,
                        help='images per step (x 3 views)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--reps', type=int, default=6)
    parser.add_argument('--warmup', type=int, default=2)
    # One thread: on a shared machine a multi-threaded op waits for its
    # slowest thread, so 2 threads on 2 busy cores time the other processes.
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--target', type=float, default=1.03)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--amp', action='store_true',
                        help='autocast: bfloat16 on a CPU, float16 on CUDA')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'],
                        help='autocast in this dtype (implies --amp)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the step and head times to PATH')
    parser.add_argument('--profile', action='store_true',
                        help='profile one step of each contrastive variant')
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    import mmlt  # noqa: F401  (registers mmlt and applies its compat fixes)
    global DEVICE, AMP
    DEVICE, AMP = args.device, args.amp_dtype or args.amp

    print(f'ResNet-50, ImageNet-LT heads (1000 classes), {args.batch} images '
          f'x 3 views at {args.size} px, {args.threads} threads, torch '
          f'{torch.__version__}, {DEVICE}{" + autocast" if AMP else ""}')
    batch = make_batch(args.batch, args.size, 1000)
    variants = [Variant(name, batch) for name in ('ce', 'proco', 'bcl')]

    if args.profile:
        for variant in variants[1:]:
            profile_step(variant)

    print(f'\nFull training steps ({args.reps} interleaved repetitions):')
    steps = time_steps(variants, args.reps, args.warmup)
    heads = time_heads(variants, args.batch, max(args.reps, 5))
    swap = time_window_swap(variants[1])

    ce_median = statistics.median(steps['ce'])
    print('\nStep time, median (min) over repetitions:')
    for name, values in steps.items():
        print(f'  {name:6s} {statistics.median(values):7.3f} s '
              f'({min(values):.3f} s)')
    print('Head forward + backward alone (3 views), median:')
    for name, values in heads.items():
        print(f'  {name:6s} {statistics.median(values) * 1e3:7.2f} ms')
    print(f'VMF window swap + full parameter refresh (once per epoch): '
          f'{swap * 1e3:.2f} ms')
    print_head_products(variants, args.batch)
    if args.json:
        write_json(args.json, steps, heads, swap, vars(args))

    print(f'\nOverhead over CE only (target <= {args.target}):')
    for name in ('proco', 'bcl'):
        paired = statistics.median(
            a / b for a, b in zip(steps[name], steps['ce']))
        of_medians = statistics.median(steps[name]) / ce_median
        head_extra = statistics.median(heads[name]) - statistics.median(
            heads['ce'])
        from_head = 1 + head_extra / ce_median
        verdicts = ['meets' if r <= args.target else 'misses'
                    for r in (paired, from_head)]
        print(f'  {name:6s} step ratio {paired:.3f} (paired median; '
              f'{verdicts[0]} the target), {of_medians:.3f} (ratio of '
              f'medians); head-only estimate {from_head:.4f} '
              f'(+{head_extra * 1e3:.1f} ms per step; {verdicts[1]} the '
              'target)')


if __name__ == '__main__':
    main()
