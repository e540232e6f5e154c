"""Evaluate a self-supervised backbone with a weighted k-NN classifier.

The backbone's globally pooled, L2-normalised features of the labelled
training set vote for the label of each test image: the ``k`` nearest
training features (cosine similarity ``s``) vote with weight
``exp(s / T)`` (Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018; the usual protocol for MoCo/PCL
features). Reports top-1 accuracy overall and on the many / medium / few-shot
classes of the (long-tailed) training set.

The config provides ``knn_train_dataloader`` and ``knn_test_dataloader``
(labelled, un-augmented), e.g. ``configs/pcl_fashionmnist.py``::

    python tools/analysis_tools/knn_eval.py configs/pcl_fashionmnist.py \\
        work_dirs/pcl_fashionmnist/epoch_20.pth --k 20
"""
import argparse
import json
import os.path as osp
import sys
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def knn_classify(train_features: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_features: torch.Tensor,
                 num_classes: int,
                 k: int = 200,
                 temperature: float = 0.07,
                 chunk_size: int = 1024) -> torch.Tensor:
    """Weighted k-NN prediction (Wu et al., CVPR 2018).

    Args:
        train_features (torch.Tensor): ``(N, p)`` unit vectors.
        train_labels (torch.Tensor): ``(N, )`` labels in ``[0, C)``.
        test_features (torch.Tensor): ``(M, p)`` unit vectors.
        num_classes (int): ``C``.
        k (int): Neighbours (capped at ``N``). Defaults to 200.
        temperature (float): ``T`` of the vote weights ``exp(s / T)``.
            Defaults to 0.07.
        chunk_size (int): Test rows per similarity block. Defaults to 1024.

    Returns:
        torch.Tensor: ``(M, C)`` class scores (the summed vote weights).
    """
    if k < 1:
        raise ValueError(f'k={k}; expected a positive int.')
    if not temperature > 0:
        raise ValueError(f'temperature={temperature}; expected > 0.')
    k = min(k, train_features.shape[0])
    scores = []
    for start in range(0, test_features.shape[0], chunk_size):
        similarity = test_features[start:start + chunk_size] @ \
            train_features.T
        top_similarity, top_index = similarity.topk(k, dim=1)
        votes = torch.zeros(
            top_index.shape[0],
            num_classes,
            dtype=similarity.dtype,
            device=similarity.device)
        votes.scatter_add_(1, train_labels[top_index],
                           torch.exp(top_similarity / temperature))
        scores.append(votes)
    return torch.cat(scores)


@torch.no_grad()
def extract_backbone_features(model, dataloader,
                              device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pooled, L2-normalised backbone features and labels of a dataloader."""
    features, labels = [], []
    for data_batch in dataloader:
        data = model.data_preprocessor(data_batch, False)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        output = model.extract_feat(inputs.to(device))
        if isinstance(output, (list, tuple)):
            output = output[-1]
        if output.dim() == 4:
            output = output.mean(dim=(2, 3))
        features.append(F.normalize(output.flatten(1), dim=1).cpu())
        labels.extend(
            int(torch.as_tensor(sample.gt_label).reshape(-1)[0])
            for sample in data['data_samples'])
    return torch.cat(features), torch.tensor(labels, dtype=torch.long)


def group_accuracy(predictions: np.ndarray, labels: np.ndarray,
                   train_counts: np.ndarray) -> Dict[str, float]:
    """Top-1 (percent) overall and per many / medium / few group."""
    from mmlt.utils.class_groups import split_classes_by_count
    num_classes = len(train_counts)
    correct = predictions == labels
    per_class = np.array([
        correct[labels == c].mean() if (labels == c).any() else np.nan
        for c in range(num_classes)
    ])
    results = {'top1': 100.0 * float(correct.mean())}
    groups = split_classes_by_count(train_counts)
    for group in ('many', 'medium', 'few'):
        members = (groups == group) & ~np.isnan(per_class)
        if members.any():
            results[group] = 100.0 * float(np.mean(per_class[members]))
    return results


def load_weights(model, checkpoint: str) -> Dict[str, list]:
    """Load ``checkpoint``'s weights into ``model``, non-strictly.

    The file goes through MMEngine's ``CheckpointLoader``, which ``import
    mmlt`` restricts to torch's weights-only unpickler: a file that pickles
    anything else, or cannot be read, raises
    :class:`mmlt.utils.checkpoint.CheckpointLoadError` naming it. Nothing
    else in the checkpoint (its stored config text included) is used.

    Returns:
        dict[str, list]: ``missing``, ``unexpected`` and ``mismatched``
        (shape) keys; if any, a warning names the file and their counts.
    """
    import mmlt  # noqa: F401  (weights-only checkpoint loaders)
    from mmengine.runner import CheckpointLoader

    from mmlt.engine.hooks.checkpoint_check_hook import compare_state_dicts
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = loaded.get('state_dict', loaded) if isinstance(
        loaded, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f'checkpoint {checkpoint} holds no state_dict')
    diff = compare_state_dicts(model, state_dict)
    if any(diff.values()):
        warnings.warn(
            f'checkpoint {checkpoint} does not fit the model: '
            f'{len(diff["missing"])} keys missing in the checkpoint, '
            f'{len(diff["unexpected"])} only in the checkpoint, '
            f'{len(diff["mismatched"])} of another shape; the layers not '
            'loaded keep their initial values.')
    return diff


def evaluate(cfg,
             checkpoint: Optional[str],
             k: int = 200,
             temperature: float = 0.07,
             device: str = 'cpu') -> Dict[str, float]:
    """Build the config's model, load ``checkpoint`` and run the k-NN
    evaluation.

    Returns:
        dict[str, float]: ``top1`` and the group accuracies, in percent.
    """
    import mmlt  # noqa: F401  (registers mmlt and applies mmlt.compat)
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    model.to(device).eval()
    train_loader = Runner.build_dataloader(cfg.knn_train_dataloader)
    test_loader = Runner.build_dataloader(cfg.knn_test_dataloader)
    train_features, train_labels = extract_backbone_features(
        model, train_loader, device)
    test_features, test_labels = extract_backbone_features(
        model, test_loader, device)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_classify(train_features, train_labels, test_features,
                          num_classes, k, temperature)
    train_counts = np.bincount(train_labels.numpy(), minlength=num_classes)
    return group_accuracy(
        scores.argmax(1).numpy(), test_labels.numpy(), train_counts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='k-NN evaluation of a self-supervised backbone')
    parser.add_argument('config', help='config with knn_*_dataloader')
    parser.add_argument(
        'checkpoint', nargs='?', help='checkpoint (omit: random weights)')
    parser.add_argument('--k', type=int, default=200, help='neighbours')
    parser.add_argument(
        '--temperature', type=float, default=0.07, help='vote temperature')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    results = evaluate(cfg, args.checkpoint, args.k, args.temperature,
                       args.device)
    print(' '.join(f'{name}: {value:.2f}' for name, value in results.items()))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
