from .dump_results import DumpResults  # noqa: F401
from .long_tail_metric import (LongTailAccuracy,  # noqa: F401
                               split_classes_by_count)
