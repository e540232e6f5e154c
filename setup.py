"""mmlt: long-tailed visual recognition with contrastive learning for OpenMMLab."""
import os.path as osp

from setuptools import find_packages, setup


def get_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmlt', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmlt',
    version=get_version(),
    description='Long-tailed recognition with contrastive learning (ProCo, BCL, '
    'SupCon, PCL) for MMPretrain and MMDetection',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'benchmarks', 'docs')),
    python_requires='>=3.8',
    # The core (losses, vMF math, hooks, samplers) needs only torch and mmengine.
    install_requires=[
        'torch>=2.6',
        'numpy',
        'mmengine>=0.10.0,<0.11.0',
    ],
    extras_require={
        'cls': ['mmcv>=2.0.0,<2.2.0', 'mmpretrain>=1.2.0,<1.3.0', 'torchvision'],
        'det': [
            'mmcv>=2.0.0,<2.2.0', 'mmdet>=3.3.0,<3.4.0', 'pycocotools',
            'lvis>=0.5.3'
        ],
        'all': [
            'mmcv>=2.0.0,<2.2.0', 'mmpretrain>=1.2.0,<1.3.0',
            'mmdet>=3.3.0,<3.4.0', 'torchvision', 'pycocotools', 'lvis>=0.5.3',
            'matplotlib', 'scipy'
        ],
        'tests': [
            'pytest', 'pytest-timeout', 'mpmath', 'scipy', 'scikit-learn',
            'faiss-cpu'
        ],
    },
    zip_safe=False,
)
