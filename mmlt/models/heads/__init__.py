from .contrastive_cls_head import ContrastiveClsHead, CosineClassifier

__all__ = ['ContrastiveClsHead', 'CosineClassifier']
