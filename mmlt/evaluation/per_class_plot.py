"""Per-class detection AP against the number of training images (log x).

matplotlib is imported when a plot is drawn, so importing this module needs
nothing beyond the core's dependencies.
"""
import math
import os
import os.path as osp
from typing import Dict, Sequence

#: LVIS frequency groups: rare (1-10 training images), common (11-100),
#: frequent (> 100).
FREQUENCY_COLORS = {'r': 'tab:red', 'c': 'tab:orange', 'f': 'tab:blue'}


def _number(value) -> float:
    return float(value) if value not in ('', None) else math.nan


def plot_per_class_ap(rows: Sequence[Dict[str, object]],
                      columns: Sequence[str], out_file: str) -> None:
    """Scatter per-class AP against the training image count.

    One panel per IoU type (``bbox``, ``segm``); AP-fixed (``*_fixed_AP``) as
    filled dots with its group means as dashed lines, the standard AP
    (``*_AP``) as open circles, both coloured by frequency group. Classes
    without training images or without a value are left out.

    Args:
        rows (Sequence[dict]): Per class: ``train_image_count``,
            ``frequency`` (``'r'``/``'c'``/``'f'``) and the AP columns
            (numbers, or ``''`` for none).
        columns (Sequence[str]): AP columns present, e.g. ``('bbox_AP',
            'bbox_fixed_AP')``.
        out_file (str): PNG path.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    iou_types = [t for t in ('bbox', 'segm') if any(
        c.startswith(t + '_') for c in columns)]
    if not iou_types:
        raise ValueError(f'no bbox_* or segm_* AP column in {columns}')
    fig, axes = plt.subplots(
        1, len(iou_types), figsize=(6.5 * len(iou_types), 4.5), squeeze=False)
    for ax, iou_type in zip(axes[0], iou_types):
        for group, color in FREQUENCY_COLORS.items():
            members = [
                r for r in rows if r.get('frequency') == group
                and _number(r.get('train_image_count')) > 0
            ]
            for column, filled in ((f'{iou_type}_AP', False),
                                   (f'{iou_type}_fixed_AP', True)):
                if column not in columns:
                    continue
                points = [(_number(r['train_image_count']),
                           _number(r[column])) for r in members
                          if not math.isnan(_number(r[column]))]
                if not points:
                    continue
                counts, values = zip(*points)
                mean = sum(values) / len(values)
                kind = 'AP-fixed' if filled else 'AP'
                ax.scatter(
                    counts,
                    values,
                    s=16,
                    facecolors=color if filled else 'none',
                    edgecolors=color,
                    alpha=0.8,
                    label=f'{kind} {group} ({len(points)}, mean {mean:.3f})')
                if filled:
                    ax.hlines(mean, min(counts), max(counts), colors=color,
                              linestyles='dashed', linewidth=1)
        ax.set_xscale('log')
        ax.set_xlabel('training images of the class (log scale)')
        ax.set_ylabel(f'per-class {iou_type} AP')
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(loc='upper left', fontsize=7)
        ax.set_title(f'LVIS {iou_type} AP per class')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


__all__ = ['plot_per_class_ap', 'FREQUENCY_COLORS']
