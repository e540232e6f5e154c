"""mmlt's registries: children of MMEngine's root registries with ``scope='mmlt'``.

Because every registry here is a child of the MMEngine root, a config whose
``default_scope`` is ``mmengine``, ``mmpretrain`` or ``mmdet`` can name an mmlt
component as ``type='mmlt.ProCoLoss'`` without ``custom_imports``: MMEngine imports
``mmlt.registry`` on the first lookup of the ``mmlt`` scope, and each registry then
imports its ``locations`` to register the classes.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

_MODEL_LOCATIONS = [
    'mmlt.models', 'mmlt.integrations.mmpretrain', 'mmlt.integrations.mmdet'
]

#: Losses, heads, necks, classifiers, data preprocessors, the vMF estimator.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmlt', locations=_MODEL_LOCATIONS)
#: Model wrappers.
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Long-tailed datasets (classification, and LVIS with class counts when
#: MMDetection is installed).
DATASETS = Registry(
    'dataset',
    parent=MMENGINE_DATASETS,
    scope='mmlt',
    locations=['mmlt.datasets', 'mmlt.integrations.mmdet'])
#: Class-aware and other balanced samplers.
DATA_SAMPLERS = Registry(
    'data sampler',
    parent=MMENGINE_DATA_SAMPLERS,
    scope='mmlt',
    locations=['mmlt.datasets', 'mmlt.integrations.mmdet'])
#: Data transforms (multi-view wrappers and friends).
TRANSFORMS = Registry(
    'transform',
    parent=MMENGINE_TRANSFORMS,
    scope='mmlt',
    locations=['mmlt.datasets'])
#: Hooks (vMF window, prototype clustering).
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmlt', locations=['mmlt.engine'])
#: Loops.
LOOPS = Registry(
    'loop', parent=MMENGINE_LOOPS, scope='mmlt', locations=['mmlt.engine'])
#: Optimizer wrappers.
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Optimizer wrapper constructors.
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Parameter schedulers.
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMENGINE_PARAM_SCHEDULERS,
    scope='mmlt',
    locations=['mmlt.engine'])
#: Metrics (many/medium/few accuracy; LVIS AP-fixed and AP-pool when
#: MMDetection is installed).
METRICS = Registry(
    'metric',
    parent=MMENGINE_METRICS,
    scope='mmlt',
    locations=['mmlt.evaluation', 'mmlt.integrations.mmdet'])
#: Evaluators.
EVALUATOR = Registry(
    'evaluator',
    parent=MMENGINE_EVALUATOR,
    scope='mmlt',
    locations=['mmlt.evaluation'])
