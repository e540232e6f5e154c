"""Plot per-class accuracy against the number of training images.

Reads the CSV that ``mmlt.LongTailAccuracy(out_file=...)`` writes (columns
``class_index, class_name, train_count, test_count, correct, accuracy,
group``) and writes a PNG: one dot per class, training count on a log x axis,
coloured by many / medium / few group, with the group mean accuracies as
horizontal lines.

Example::

    python tools/analysis_tools/plot_per_class_acc.py \\
        work_dirs/exp/per_class_acc.csv --out work_dirs/exp/per_class_acc.png
"""
import argparse
import csv
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

GROUP_COLORS = {'many': 'tab:blue', 'medium': 'tab:orange', 'few': 'tab:red'}


def read_per_class_csv(path: str) -> List[Dict[str, object]]:
    """Rows of the per-class CSV with numeric fields parsed.

    Args:
        path (str): CSV written by ``LongTailAccuracy``.

    Returns:
        list[dict]: ``train_count`` (int), ``accuracy`` (float, nan when the
        class had no evaluation sample), ``group`` and ``class_name`` (str).
    """
    rows = []
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        missing = {'train_count', 'accuracy', 'group'} - set(
            reader.fieldnames or [])
        if missing:
            raise ValueError(f'{path} lacks the columns {sorted(missing)}; '
                             'expected the CSV of mmlt.LongTailAccuracy')
        for row in reader:
            rows.append(
                dict(
                    class_name=row.get('class_name', ''),
                    train_count=int(row['train_count']),
                    accuracy=float(row['accuracy'])
                    if row['accuracy'] else math.nan,
                    group=row['group']))
    return rows


def plot_per_class_accuracy(rows: Sequence[Dict[str, object]],
                            out_file: str,
                            title: Optional[str] = None) -> None:
    """Write the scatter plot of accuracy vs training count.

    Classes with no training image (not placeable on a log axis) or no
    evaluation sample are left out.

    Args:
        rows (Sequence[dict]): From :func:`read_per_class_csv`.
        out_file (str): Output PNG path.
        title (str, optional): Figure title. Defaults to None.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, color in GROUP_COLORS.items():
        points = [
            r for r in rows if r['group'] == group and r['train_count'] > 0
            and not math.isnan(r['accuracy'])
        ]
        if not points:
            continue
        counts = [r['train_count'] for r in points]
        accuracies = [r['accuracy'] for r in points]
        mean = sum(accuracies) / len(accuracies)
        ax.scatter(
            counts,
            accuracies,
            s=14,
            color=color,
            alpha=0.8,
            label=f'{group} ({len(points)} classes, mean {mean:.1f})')
        ax.hlines(
            mean,
            min(counts),
            max(counts),
            colors=color,
            linestyles='dashed',
            linewidth=1)
    ax.set_xscale('log')
    ax.set_xlabel('training images of the class (log scale)')
    ax.set_ylabel('per-class top-1 accuracy (%)')
    ax.set_ylim(-2, 102)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    directory = osp.dirname(osp.abspath(out_file))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plot per-class accuracy vs training count from the CSV '
        'of mmlt.LongTailAccuracy')
    parser.add_argument('csv_file', help='per-class accuracy CSV')
    parser.add_argument(
        '--out',
        default=None,
        help='output PNG (default: the CSV path with .png)')
    parser.add_argument('--title', default=None, help='figure title')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    out_file = args.out or osp.splitext(args.csv_file)[0] + '.png'
    rows = read_per_class_csv(args.csv_file)
    plot_per_class_accuracy(rows, out_file, args.title)
    print(f'saved {out_file}')
    return out_file


if __name__ == '__main__':
    main(sys.argv[1:])
