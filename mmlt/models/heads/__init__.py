from .contrastive_branch import (ContrastiveBranch, build_contrast_loss,
                                 build_mlp)
from .cosine_classifier import CosineClassifier

__all__ = [
    'ContrastiveBranch', 'CosineClassifier', 'build_contrast_loss',
    'build_mlp'
]
