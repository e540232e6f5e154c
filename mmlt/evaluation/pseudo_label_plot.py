"""Per-epoch plot of semi-supervised training's pseudo-labels.

matplotlib is imported when a plot is drawn, so importing this module needs
nothing beyond the core's dependencies.
"""
import os
import os.path as osp
from typing import Dict, Sequence

GROUPS = ('many', 'medium', 'few')


def plot_pseudo_labels(history: Sequence[Dict[str, object]],
                       out_file: str) -> None:
    """Three panels: the mask rate and the accuracy of the kept pseudo-labels
    per epoch (all classes and many / medium / few), and the last epoch's
    estimated unlabeled class distribution against the true one.

    Args:
        history (Sequence[dict]): One dict per epoch so far, with ``epoch``,
            ``pl_mask_rate``, ``pl_acc`` and their ``_many`` / ``_medium`` /
            ``_few`` variants (percent), and ``distributions``: ``true``,
            ``mean_prediction``, ``histogram`` and (optionally)
            ``balanced_histogram`` and ``balanced_mean`` (lists over
            classes).
        out_file (str): PNG path (its folder is created).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    epochs = [row['epoch'] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, key, title in ((axes[0], 'pl_mask_rate', 'pseudo-labels kept (%)'),
                           (axes[1], 'pl_acc', 'accuracy of the kept (%)')):
        for suffix, style in [('', 'k-')] + [(f'_{g}', '-') for g in GROUPS]:
            ax.plot(epochs, [row[key + suffix] for row in history], style,
                    marker='o', markersize=3,
                    label=suffix.lstrip('_') or 'all')
        ax.set_xlabel('epoch')
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    distributions = history[-1]['distributions']
    classes = range(len(distributions['true']))
    bars = [(name, color) for name, color in (
        ('true', 'tab:gray'), ('mean_prediction', 'tab:blue'),
        ('histogram', 'tab:orange'), ('balanced_histogram', 'tab:green'),
        ('balanced_mean', 'tab:olive'))
            if name in distributions]
    width = 0.8 / len(bars)
    for offset, (name, color) in enumerate(bars):
        axes[2].bar([c + (offset - (len(bars) - 1) / 2) * width
                     for c in classes],
                    distributions[name], width, color=color,
                    label=name.replace('_', ' '))
    axes[2].set_xlabel('class')
    axes[2].set_title(f'unlabeled class distribution, epoch {epochs[-1]}')
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=80)
    plt.close(fig)
