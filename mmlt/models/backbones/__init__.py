from .cifar_resnet import CifarResNet

__all__ = ['CifarResNet']
