# default_runtime for the GPU recipes whose batches all have one size (fixed
# crops: ImageNet-LT, iNaturalist 2018, Places-LT, CIFAR-LT): cuDNN's
# autotuner picks each convolution's kernel on the first batches, and that
# choice stays the best. Their loaders pin memory (the dataset bases), and
# mmlt's data preprocessor copies batches to the GPU without blocking.
_base_ = './default_runtime.py'

env_cfg = dict(cudnn_benchmark=True)
