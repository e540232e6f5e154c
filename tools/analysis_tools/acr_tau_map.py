"""Where ACR's adaptive tau settles for a trained semi-supervised model.

With ``unlabeled_prior=dict(mode='adaptive')`` the estimate of the unlabeled
class distribution is the mean pseudo-label distribution under the current
``tau``, and the next ``tau`` comes from that estimate (docs/
semi_supervised.md). This runs a checkpoint's classifier over the config's
unlabeled split (its validation pipeline: no augmentation) and prints, for a
grid of adjustments ``tau``, the estimate's total variation from the true
unlabeled distribution (the kept-aside labels) and the ``tau`` ACR would
pick from it (with ``source='mean_prediction'``, ``tau`` settles where the
two columns cross), then the ``tau`` from the two estimates that do not
depend on ``tau``: ACR's own, the balanced classifier's confident
predictions, and the balanced classifier's mean prediction::

    python tools/analysis_tools/acr_tau_map.py \\
        configs/semi_supervised/fixmatch-la-acr_fashionmnistlt-uniform.py \\
        work_dirs/ssl/fixmatch-la-acr_fashionmnistlt-uniform/seed0/epoch_20.pth

The checkpoint's ``state_dict`` (the trained model, which makes the
pseudo-labels) is used, not the EMA copy.
"""
import argparse

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the semi-supervised config')
    parser.add_argument('checkpoint', help='a checkpoint of a run of it')
    parser.add_argument('--taus', type=float, nargs='+',
                        default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75,
                                 2.0],
                        help='adjustments to evaluate (default 0 to 2)')
    parser.add_argument('--batch-size', type=int, default=256)
    return parser.parse_args(argv)


def crossing(rows):
    """The tau where the next tau equals it, by linear interpolation between
    grid points (None if the map does not cross the identity)."""
    for (t0, _, n0), (t1, _, n1) in zip(rows, rows[1:]):
        g0, g1 = n0 - t0, n1 - t1
        if g0 == 0:
            return t0
        if g0 * g1 < 0:
            return t0 + (t1 - t0) * g0 / (g0 - g1)
    return rows[-1][0] if rows and rows[-1][2] == rows[-1][0] else None


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint

    import mmlt  # noqa: F401  (registers mmlt's modules)
    from mmlt.models.utils.unlabeled_prior import acr_tau, adaptive_tau_map
    from mmlt.registry import MODELS
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu',
                    logger='silent')
    model.eval()
    head = model.head
    if not hasattr(head, 'unlabeled_prior'):
        raise SystemExit(f'{args.config}: the head ({type(head).__name__}) '
                         'has no unlabeled_prior; use a FixMatchClsHead '
                         'config (configs/semi_supervised/)')
    if torch.isnan(head.log_prior).any():
        raise SystemExit(f'{args.checkpoint}: the head has no class prior; '
                         'use a checkpoint saved by a training run')
    unlabeled = dict(cfg.train_dataloader.dataset.unlabeled,
                     pipeline=cfg.val_dataloader.dataset.pipeline)
    loader = Runner.build_dataloader(
        dict(batch_size=args.batch_size, num_workers=0,
             sampler=dict(type='DefaultSampler', shuffle=False),
             dataset=unlabeled))
    logits = []
    with torch.no_grad():
        for data in loader:
            data = model.data_preprocessor(data, False)
            logits.append(head(model.extract_feat(data['inputs'])))
    logits = torch.cat(logits)
    true = np.bincount(loader.dataset.get_true_labels(),
                       minlength=logits.shape[1])
    true = torch.as_tensor(true / true.sum(), dtype=torch.float64)
    rows = adaptive_tau_map(logits, head.log_prior, head.labeled_tau,
                            sorted(args.taus),
                            head.unlabeled_prior.tau_max)
    saved = float(head.unlabeled_prior.adaptive_tau)
    print(f'{len(logits)} unlabeled images; the checkpoint\'s tau: '
          f'{saved:.3f}')
    print('| adjustment tau | estimate: total variation from the true '
          'distribution | tau ACR picks from it |')
    print('| --- | --- | --- |')
    for tau, estimate, next_tau in rows:
        distance = 0.5 * (estimate - true).abs().sum()
        print(f'| {tau:.2f} | {distance:.3f} | {next_tau:.3f} |')
    fixed = crossing(rows)
    print('with the mean prediction under the current tau as the estimate, '
          'tau settles near ' + (f'{fixed:.3f}' if fixed is not None else
                                 'no point of the grid (no crossing)'))
    # the balanced classifier's estimates do not depend on tau: one value each
    kept, probs = head._balanced_predictions(logits.float()).double()
    prior = head.log_prior.exp()
    for name, counts in (
            ('ACR\'s estimate (the balanced classifier\'s '
             f'{int(kept.sum())} confident predictions)', kept.sum(0)),
            ('the balanced classifier\'s mean prediction', probs.sum(0))):
        estimate = counts / counts.sum().clamp(min=1e-300)
        tau = float(acr_tau(estimate.clamp(min=head.unlabeled_prior.floor),
                            prior, head.unlabeled_prior.tau_max))
        print(f'with {name}: total variation '
              f'{0.5 * float((estimate - true).abs().sum()):.3f}, '
              f'tau {tau:.3f}')

if __name__ == '__main__':
    main()
