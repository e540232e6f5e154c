"""Parts that subclass MMPretrain classes; registered only when mmpretrain
is installed and imports, so that ``import mmlt`` needs just torch and
mmengine."""
from mmlt.integrations._host import host_available

if host_available(('mmpretrain', 'mmpretrain.models')):
    from .contrastive_cls_head import ContrastiveClsHead  # noqa: F401
    from .data_preprocessor import MultiViewDataPreprocessor  # noqa: F401
    from .decoupled_cls_head import DecoupledClsHead  # noqa: F401
    from .fixmatch_cls_head import FixMatchClsHead  # noqa: F401

    __all__ = [
        'ContrastiveClsHead', 'DecoupledClsHead', 'FixMatchClsHead',
        'MultiViewDataPreprocessor'
    ]
