"""Choose tau-norm's tau on the validation split; write it into a checkpoint.

tau-norm (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020) divides each classifier row by its norm
to the power tau. This tool takes a tau-norm config
(``mmlt.DecoupledClsHead`` with ``mode='tau_norm'``) and a jointly trained
checkpoint, computes the pooled features of the config's *validation* split
once, scores every tau of a grid with the config's validation metric, and
keeps the best (ties: the smallest tau). The test split is never built: the
config's test dataloader is dropped before the runner exists, and a config
whose validation set is its test set is refused. It writes, in the work dir:

* ``tau_norm.pth``: the checkpoint's weights with ``head.tau`` set, for
  ``tools/test.py CONFIG tau_norm.pth``;
* ``tau_norm_search.json``: every tau with its metrics, the choice and what
  it was chosen on.

    python tools/analysis_tools/tau_norm_search.py \\
        configs/decoupled/taunorm_fashionmnistlt.py \\
        work_dirs/ce_fashionmnistlt/epoch_20.pth \\
        --work-dir work_dirs/taunorm_fashionmnistlt
    python tools/test.py configs/decoupled/taunorm_fashionmnistlt.py \\
        work_dirs/taunorm_fashionmnistlt/tau_norm.pth

Several processes: ``torchrun --nproc_per_node N tools/analysis_tools/
tau_norm_search.py CONFIG CKPT --launcher pytorch`` (each rank scores its
part of the validation set; the metric gathers them).
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)

import mmlt  # noqa: E402,F401  (applies mmlt.compat)
from mmengine.config import DictAction  # noqa: E402

from mmlt.utils.launch import (apply_common_args, build_runner,  # noqa: E402
                               close_process_group, exit_finished_run,
                               load_config, validates_on_test_set)

#: tau from 0 to 2 in steps of 0.1.
DEFAULT_TAUS = [round(0.1 * i, 1) for i in range(21)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a tau-norm config')
    parser.add_argument('checkpoint', help='the jointly trained checkpoint')
    parser.add_argument('--work-dir', help='where the results go')
    parser.add_argument('--taus', nargs='+', type=float, default=DEFAULT_TAUS,
                        help='the grid (default 0, 0.1, ..., 2)')
    parser.add_argument('--metric', default='lt/top1',
                        help='validation metric to maximise (default '
                        'lt/top1: on a balanced validation split, the mean '
                        'per-class accuracy)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if any(tau < 0 for tau in args.taus):
        parser.error(f'--taus must be >= 0, got {args.taus}')
    return args


def search_config(cfg, name):
    """The config ``name``, checked and stripped of everything the search
    must not build (training, the test set)."""
    head = cfg.model.get('head', {})
    if not str(head.get('type', '')).endswith('DecoupledClsHead') or \
            head.get('mode') != 'tau_norm':
        raise ValueError(
            f'{name} is not a tau-norm config: its head must be '
            "mmlt.DecoupledClsHead with mode='tau_norm' (e.g. configs/"
            'decoupled/taunorm_*.py)')
    if head.get('tau') is not None:
        raise ValueError(
            f'{name} fixes model.head.tau={head["tau"]}, which would '
            'override every tau tried; leave it unset')
    if not cfg.get('val_dataloader') or not cfg.get('val_evaluator'):
        raise ValueError(f'{name} has no val_dataloader/val_evaluator: the '
                         'search needs a validation split')
    if validates_on_test_set(cfg):
        raise ValueError(
            f'{name} validates on its test set; choosing tau there '
            'would tune on the test set. Point val_dataloader at a '
            "validation split (split='val' for Fashion-MNIST-LT / CIFAR-LT, "
            'the val list for ImageNet-LT / Places-LT)')
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler', 'test_dataloader', 'test_evaluator',
                'test_cfg'):
        cfg[key] = None
    cfg.val_cfg = cfg.get('val_cfg') or dict()
    cfg.load_from = None
    cfg.resume = False
    return cfg


def validation_features(runner):
    """Pooled features and data samples of this rank's validation batches.

    Returns:
        list[tuple[Tensor, list]]: ``(features (B, d), data samples)``.
    """
    import torch
    model = getattr(runner.model, 'module', runner.model)
    model.eval()
    batches = []
    with torch.no_grad():
        for data_batch in runner.val_loop.dataloader:
            data = model.data_preprocessor(data_batch, False)
            feats = model.extract_feat(data['inputs'])
            batches.append((model.head.pre_logits(feats),
                            data['data_samples']))
    return batches


def score_taus(runner, batches, taus):
    """The validation metrics of every tau, identical on every rank."""
    head = getattr(runner.model, 'module', runner.model).head
    evaluator = runner.val_loop.evaluator
    size = len(runner.val_loop.dataloader.dataset)
    scores = []
    for tau in taus:
        head.set_tau(tau)
        for feats, data_samples in batches:
            evaluator.process(head.predict((feats, ), data_samples))
        scores.append(evaluator.evaluate(size))
    return scores


def choose(taus, scores, metric):
    """The tau with the best ``metric`` (the smallest on a tie)."""
    if metric not in scores[0]:
        raise KeyError(f'--metric {metric!r} is not among the validation '
                       f'metrics {sorted(scores[0])}')
    values = np.array([score[metric] for score in scores])
    best = float(np.max(values))
    return min(tau for tau, value in zip(taus, values) if value == best)


def write_results(runner, args, taus, scores, best_tau):
    """``tau_norm.pth`` and ``tau_norm_search.json`` (main process)."""
    from mmengine.dist import is_main_process
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
    if not is_main_process():
        return None
    model = getattr(runner.model, 'module', runner.model)
    model.head.set_tau(best_tau)
    os.makedirs(runner.work_dir, exist_ok=True)
    out = osp.join(runner.work_dir, 'tau_norm.pth')
    meta = dict(tau=best_tau, chosen_on='validation split',
                source_checkpoint=osp.abspath(args.checkpoint),
                # not 'config': MMEngine reads that key as config text
                config_file=osp.abspath(args.config))
    save_checkpoint(dict(meta=meta,
                         state_dict=weights_to_cpu(model.state_dict())), out)
    record = dict(meta, metric=args.metric, checkpoint=osp.abspath(out),
                  validation_dataset=runner.cfg.val_dataloader['dataset'],
                  taus=[dict(tau=tau, **score)
                        for tau, score in zip(taus, scores)])
    with open(osp.join(runner.work_dir, 'tau_norm_search.json'), 'w') as f:
        json.dump(record, f, indent=1, default=str)
    return out


def search(runner, checkpoint, taus, metric):
    """Load ``checkpoint``, score every tau on the validation split, choose.

    Returns:
        tuple[float, list[dict]]: The chosen tau and the metrics of each tau
        (same on every rank).
    """
    runner.load_checkpoint(checkpoint, map_location='cpu')
    scores = score_taus(runner, validation_features(runner), taus)
    best_tau = choose(taus, scores, metric)
    for tau, score in zip(taus, scores):
        mark = '  <- chosen' if tau == best_tau else ''
        runner.logger.info(f'tau {tau:.3g}: {metric} {score[metric]:.2f}'
                           f'{mark}')
    return best_tau, scores


def main(argv=None):
    args = parse_args(argv)
    cfg = apply_common_args(load_config(args.config, args.cfg_options), args)
    runner = build_runner(search_config(cfg, args.config))
    taus = sorted(set(args.taus))
    best_tau, scores = search(runner, args.checkpoint, taus, args.metric)
    out = write_results(runner, args, taus, scores, best_tau)
    if out is not None:
        runner.logger.info(
            f'tau={best_tau:g} chosen on the validation split; test it with\n'
            f'  python tools/test.py {args.config} {out}')
    close_process_group()
    return best_tau, scores


if __name__ == '__main__':
    main()
    exit_finished_run()
