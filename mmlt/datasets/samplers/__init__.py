from .class_aware_sampler import (ClassAwareSampler,  # noqa: F401
                                  ClassWeightedSampler,
                                  ProgressivelyBalancedSampler,
                                  SquareRootSampler)
