from .class_aware_sampler import (ClassAwareSampler,  # noqa: F401
                                  ClassWeightedSampler,
                                  ProgressivelyBalancedSampler,
                                  SquareRootSampler)
from .multi_source_sampler import MultiSourceSampler  # noqa: F401
from .resumable_sampler import (FirstIndicesSkipping,  # noqa: F401
                                ResumableSampler)
