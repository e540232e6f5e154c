"""Dump test predictions with one compact copy per sample."""
from typing import Any, Sequence

from mmengine.evaluator import DumpResults as MMEngineDumpResults
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmlt.registry import METRICS


def compact_copy(data: Any) -> Any:
    """``data`` with each tensor replaced by a NumPy copy of its elements.

    A sample's prediction tensors are views into its batch's output: pickled
    as views, each carries the whole batch's storage. A pickled tensor also
    carries more framing than a NumPy array, which matters for small
    per-sample scores and labels. MMPretrain's analysis
    tools (``analyze_results.py``, ``confusion_matrix.py``) read NumPy arrays
    as they read tensors.
    """
    if isinstance(data, Tensor):
        return data.detach().cpu().numpy().copy()
    if isinstance(data, BaseDataElement):
        copy = data.new()
        for key, value in data.items():
            setattr(copy, key, compact_copy(value))
        return copy
    if isinstance(data, dict):
        return {key: compact_copy(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(compact_copy(value) for value in data)
    return data


@METRICS.register_module()
class DumpResults(MMEngineDumpResults):
    """MMEngine's ``DumpResults`` (``tools/test.py --out``), storing compact
    per-sample copies with NumPy arrays in place of tensors (see
    :func:`compact_copy`)."""

    def process(self, data_batch: Any, predictions: Sequence[dict]) -> None:
        self.results.extend(compact_copy(list(predictions)))
