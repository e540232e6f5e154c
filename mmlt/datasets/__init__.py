from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
from .cifar_lt import CIFAR10LT, CIFAR100LT  # noqa: F401
from .fashion_mnist_lt import FashionMNISTLT  # noqa: F401
from .semi_supervised_dataset import SemiSupervisedDataset  # noqa: F401
from .seeded_dataset import (ClassBalancedDataset,  # noqa: F401
                             SeededDataset, SeededItems)
from .list_datasets import (INaturalist2018, ImageNetLT,  # noqa: F401
                            LongTailImageList, PlacesLT)
from .lt_base import (DatasetFilesNotFoundError,  # noqa: F401
                      LongTailDataset, get_dataset_labels, make_lt_counts,
                      make_lt_indices)
