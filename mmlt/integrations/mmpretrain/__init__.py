"""Parts that subclass MMPretrain classes; registered only when mmpretrain is
installed, so that ``import mmlt`` needs just torch and mmengine."""
import importlib.util

if importlib.util.find_spec('mmpretrain') is not None:
    from .data_preprocessor import MultiViewDataPreprocessor  # noqa: F401

    __all__ = ['MultiViewDataPreprocessor']
