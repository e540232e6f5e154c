"""mmlt: long-tailed visual recognition with contrastive learning for OpenMMLab."""
from . import compat
from .version import __version__

compat.apply()
from .utils import checkpoint  # noqa: E402,F401  weights-only checkpoint loaders

__all__ = ['__version__']
