"""Self-supervised algorithms on MMPretrain's framework; registered only when
mmpretrain is installed, so that ``import mmlt`` needs just torch and
mmengine."""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmpretrain') is not None:
    from .pcl import PCL  # noqa: F401

    __all__ = ['PCL']
