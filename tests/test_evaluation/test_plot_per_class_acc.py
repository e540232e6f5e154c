import importlib.util
import os.path as osp
import struct

import pytest
import torch

from mmlt.evaluation.metrics import LongTailAccuracy

SCRIPT = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'analysis_tools',
    'plot_per_class_acc.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _load_tool():
    spec = importlib.util.spec_from_file_location('plot_per_class_acc',
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b'IHDR'
    return struct.unpack('>II', head[16:24])


def test_plot_from_metric_csv(tmp_path):
    csv_file = tmp_path / 'per_class.csv'
    metric = LongTailAccuracy(
        class_counts=[300, 120, 60, 30, 10, 3, 0], out_file=str(csv_file))
    # Class 5 gets no evaluation sample and class 6 has no training image:
    # the plot must skip both without failing.
    samples = [(0, 0), (0, 0), (1, 1), (1, 0), (2, 2), (3, 0), (4, 4),
               (6, 6)]
    metric.process(None, [
        dict(gt_label=torch.tensor([y]), pred_label=torch.tensor([p]))
        for y, p in samples
    ])
    metric.evaluate(len(samples))
    tool = _load_tool()
    rows = tool.read_per_class_csv(str(csv_file))
    assert [r['train_count'] for r in rows] == [300, 120, 60, 30, 10, 3, 0]
    assert rows[1]['accuracy'] == pytest.approx(50.0)

    out_file = tmp_path / 'plots' / 'acc.png'
    assert tool.main([str(csv_file), '--out', str(out_file),
                      '--title', 'toy']) == str(out_file)
    assert osp.getsize(out_file) > 1000
    width, height = _png_size(out_file)
    assert width > 100 and height > 100
    # Default output path: next to the CSV.
    assert tool.main([str(csv_file)]) == str(tmp_path / 'per_class.png')
    assert _png_size(tmp_path / 'per_class.png') == (width, height)


def test_rejects_foreign_csv(tmp_path):
    csv_file = tmp_path / 'other.csv'
    csv_file.write_text('a,b\n1,2\n')
    with pytest.raises(ValueError, match='LongTailAccuracy'):
        _load_tool().main([str(csv_file)])
