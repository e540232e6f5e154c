from .fixmatch_cosine import (FixMatchCosineLR,  # noqa: F401
                              FixMatchCosineParamScheduler)
