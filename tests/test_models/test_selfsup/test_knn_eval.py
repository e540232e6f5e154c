"""The weighted k-NN classifier of tools/analysis_tools/knn_eval.py against a
loop."""
import importlib.util
import math
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', '..', 'tools', 'analysis_tools',
    'knn_eval.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('knn_eval', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_knn_scores_match_loop():
    tool = load_tool()
    generator = torch.Generator().manual_seed(0)
    train = F.normalize(
        torch.randn(30, 5, generator=generator, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 4, (30, ), generator=generator)
    test = F.normalize(
        torch.randn(7, 5, generator=generator, dtype=torch.float64), dim=1)
    scores = tool.knn_classify(
        train, labels, test, 4, k=6, temperature=0.1, chunk_size=3)
    for i, query in enumerate(test):
        similarity = [float(query @ t) for t in train]
        nearest = sorted(range(30), key=lambda j: -similarity[j])[:6]
        expected = [0.0] * 4
        for j in nearest:
            expected[int(labels[j])] += math.exp(similarity[j] / 0.1)
        np.testing.assert_allclose(scores[i].numpy(), expected, rtol=1e-12)


def test_group_accuracy():
    tool = load_tool()
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 0, 1, 0, 0, 0])
    # class 0: 200 training images (many), 1: 50 (medium), 2: 5 (few)
    results = tool.group_accuracy(predictions, labels, np.array([200, 50, 5]))
    assert results == {
        'top1': 100 * 3 / 6,
        'many': 100.0,
        'medium': 50.0,
        'few': 0.0
    }
