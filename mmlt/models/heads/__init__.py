from .contrastive_branch import (ContrastiveBranch, build_contrast_loss,
                                 build_mlp)
from .cosine_classifier import CosineClassifier
from .decoupled import LearnableWeightScaling, tau_normalize
from .utils import pooled_features

__all__ = [
    'ContrastiveBranch', 'CosineClassifier', 'LearnableWeightScaling',
    'build_contrast_loss', 'build_mlp', 'pooled_features', 'tau_normalize'
]
