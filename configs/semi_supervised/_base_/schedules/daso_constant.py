# DASO's learning rate (Oh et al., CVPR 2022): constant lr0 for the whole
# run (a factor of 1, so the scheduler changes nothing). To train a CIFAR
# config with it:
#     _base_ = './fixmatch-la_wrn28-2_cifar10lt-consistent.py'
#     param_scheduler = _base_.daso_constant
daso_constant = [dict(type='ConstantLR', factor=1.0, by_epoch=True)]
