from .checkpoint_check_hook import CheckpointCheckHook
from .class_counts_hook import ClassCountsHook
from .exact_resume_hook import ExactResumeHook
from .gather_bound_hook import GatherBoundHook
from .metric_out_dir_hook import MetricOutDirHook
from .vmf_window_hook import VMFWindowHook
from .prototype_clustering_hook import PrototypeClusteringHook
from .semi_supervised_hook import SemiSupervisedHook
from .standard_ap_until_last_hook import StandardAPUntilLastHook

__all__ = [
    'CheckpointCheckHook', 'ClassCountsHook', 'ExactResumeHook',
    'GatherBoundHook',
    'MetricOutDirHook', 'VMFWindowHook', 'PrototypeClusteringHook',
    'SemiSupervisedHook', 'StandardAPUntilLastHook'
]
