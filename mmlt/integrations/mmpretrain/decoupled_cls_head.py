"""The classifier stage of decoupled training as an MMPretrain head: cRT,
tau-norm and LWS (Kang et al., ICLR 2020)."""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead

from mmlt.models.heads import (CosineClassifier, LearnableWeightScaling,
                               pooled_features, tau_normalize)
from mmlt.registry import MODELS
from mmlt.utils.validation import check_choice, check_int, check_number

#: Keys of a joint head that a classifier stage drops when loading it.
_JOINT_TRAINING_PARTS = ('log_prior', 'loss_module.', 'contrast_branch.')
_PRETRAINED_HINT = (
    "init_cfg=dict(type='Pretrained', checkpoint=<the joint checkpoint>, "
    "prefix='head.')")


@MODELS.register_module()
class DecoupledClsHead(ClsHead):
    """A classifier re-balanced on a frozen backbone (Kang et al., ICLR 2020).

    Kang et al., "Decoupling Representation and Classifier for Long-Tailed
    Recognition", ICLR 2020. The backbone (frozen by its ``frozen_stages``
    and ``norm_eval``) comes from a jointly trained checkpoint of mmlt or
    MMPretrain; this head is one of three classifier stages::

        x (B, d) --fc--> z = W x + b (B, C) --+-- 'crt':      z
                                              +-- 'lws':      f * z
                                              +-- 'tau_norm': (W / ||W||^tau) x

    * ``'crt'``: ``fc`` is new (re-initialised) and trained, with
      class-balanced sampling in the configs.
    * ``'lws'``: ``fc`` is the joint classifier, frozen; only the per-class
      scales ``f`` (init 1: the joint classifier) are trained.
    * ``'tau_norm'``: ``fc`` is the joint classifier; nothing is trained
      (:meth:`loss` refuses).
      ``tau`` is a buffer, NaN until chosen:
      ``tools/analysis_tools/tau_norm_search.py`` picks it on the validation
      split and writes it into a checkpoint for ``tools/test.py``. The bias
      is dropped unless ``keep_bias`` (the rule rescales the weights only).

    ``fc`` has the key layout of MMPretrain's ``LinearClsHead`` and of
    :class:`mmlt.ContrastiveClsHead` (``fc.weight``, ``fc.bias``), so
    ``'lws'`` and ``'tau_norm'`` load their classifier with
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='head.')`` or
    from a whole checkpoint (``tools/test.py``); a checkpoint whose
    classifier does not fit (no classifier, another kind or size) is an
    error, not a warning.

    Args:
        num_classes (int): Number of classes C.
        in_channels (int): Feature dimension d.
        mode (str): ``'crt'``, ``'lws'`` or ``'tau_norm'``. Defaults to
            ``'crt'``.
        classifier (str): ``'linear'`` (with bias) or ``'cosine'``
            (:class:`mmlt.models.heads.CosineClassifier`, no bias), as the
            joint checkpoint's. Defaults to ``'linear'``.
        cosine_scale (float): Logit scale of the cosine classifier. Defaults
            to 30.
        tau (float, optional): tau-norm's exponent. None (default): the one
            a checkpoint holds (written by the tau search); a value here
            wins over the checkpoint's.
        keep_bias (bool): tau-norm keeps the joint classifier's bias.
            Defaults to False.
        loss (dict): Classification loss. Defaults to cross-entropy.
        topk (int | tuple[int]): As MMPretrain's ``ClsHead``.
        init_cfg (dict, optional): None (default) is a normal init (std
            0.01) of the new ``fc`` for ``'crt'``, nothing otherwise.

    Shape:
        - feats[-1]: ``(B, d)`` pooled features; cls_score: ``(B, C)``.
    """

    MODES = ('crt', 'lws', 'tau_norm')

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mode: str = 'crt',
                 classifier: str = 'linear',
                 cosine_scale: float = 30.0,
                 tau: Optional[float] = None,
                 keep_bias: bool = False,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 topk: Union[int, Tuple[int]] = (1, ),
                 init_cfg: Optional[dict] = None):
        check_int('num_classes', num_classes)
        check_int('in_channels', in_channels)
        check_choice('mode', mode, self.MODES)
        check_choice('classifier', classifier, ('linear', 'cosine'))
        if mode == 'tau_norm' and classifier == 'cosine':
            raise ValueError(
                "mode='tau_norm' on a cosine classifier changes nothing (its "
                "rows are normalised anyway); use mode='lws' or 'crt'")
        if init_cfg is None and mode == 'crt':
            init_cfg = dict(type='Normal', layer='Linear', std=0.01)
        super().__init__(loss=loss, topk=topk, init_cfg=init_cfg)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.mode = mode
        self.fc = CosineClassifier(in_channels, num_classes, cosine_scale) \
            if classifier == 'cosine' else nn.Linear(in_channels, num_classes)
        self.keep_bias = bool(keep_bias)
        self.scaling = LearnableWeightScaling(num_classes) \
            if mode == 'lws' else None
        if mode == 'lws':
            self.fc.requires_grad_(False)  # the joint classifier stays
        # tau-norm trains nothing (no training loop; loss() refuses), yet
        # keeps requires_grad: DDP, which wraps a distributed test, refuses a
        # model without a parameter that requires one.
        if tau is not None and mode != 'tau_norm':
            raise ValueError(f"tau is tau-norm's; drop it for mode={mode!r}")
        self._config_tau = None if tau is None else check_number(
            'tau', tau, minimum=0)
        # NaN until chosen; only tau-norm heads hold it
        self.register_buffer(
            'tau', torch.tensor(math.nan, dtype=torch.float64)
            if mode == 'tau_norm' else None)
        self.tau_is_set = False
        if self._config_tau is not None:
            self.set_tau(self._config_tau)
        self.classifier_loaded = False

    def set_tau(self, tau: float) -> None:
        """Set tau-norm's exponent (the tau search calls this)."""
        if self.mode != 'tau_norm':
            raise ValueError(f'set_tau needs a tau-norm head, this one is '
                             f'mode={self.mode!r}')
        self.tau.fill_(check_number('tau', tau, minimum=0))
        self.tau_is_set = True

    def init_weights(self) -> None:
        super().init_weights()
        if self.mode == 'lws' and not self.classifier_loaded:
            raise ValueError(
                'LWS scales a trained classifier, but none was loaded: set '
                f'model.head.{_PRETRAINED_HINT}')

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The last stage's pooled features, ``(B, d)``."""
        return pooled_features(feats, self.in_channels)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Class scores ``(B, C)`` of the mode."""
        x = self.pre_logits(feats)
        if self.mode != 'tau_norm':
            logits = self.fc(x)
            return logits if self.scaling is None else self.scaling(logits)
        if not self.tau_is_set:
            raise RuntimeError(
                'tau-norm has no tau yet: choose it on the validation split '
                'with tools/analysis_tools/tau_norm_search.py CONFIG '
                'CHECKPOINT (it writes a checkpoint that holds it), or set '
                'model.head.tau')
        weight = tau_normalize(self.fc.weight, self.tau)
        bias = self.fc.bias if self.keep_bias else None
        return F.linear(x, weight, bias)

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs):
        if self.mode == 'tau_norm':
            raise RuntimeError(
                'tau-norm is post hoc: nothing to train. Choose tau with '
                'tools/analysis_tools/tau_norm_search.py, then evaluate '
                'with tools/test.py')
        return super().loss(feats, data_samples, **kwargs)

    def _check_classifier(self, state_dict: dict, prefix: str) -> None:
        """Raise if the checkpoint's classifier cannot be this head's."""
        weight = state_dict.get(prefix + 'fc.weight')
        if weight is None:
            if self.mode != 'crt':
                raise ValueError(
                    f"mode={self.mode!r} re-uses the joint classifier, but "
                    f"the checkpoint has no {prefix}fc.weight (a stage-1 "
                    "contrastive checkpoint has none: use mode='crt'); "
                    f'point {_PRETRAINED_HINT} at a checkpoint with one')
            return
        if tuple(weight.shape) != tuple(self.fc.weight.shape):
            raise ValueError(
                f'the checkpoint classifier {prefix}fc.weight has shape '
                f'{tuple(weight.shape)}, this head '
                f'{tuple(self.fc.weight.shape)} (num_classes, in_channels); '
                'set them to the checkpoint\'s')
        has_bias = prefix + 'fc.bias' in state_dict
        if has_bias != isinstance(self.fc, nn.Linear):
            kind = 'linear' if has_bias else 'cosine'
            raise ValueError(
                f'the checkpoint classifier is {kind} ({prefix}fc.bias '
                f'{"present" if has_bias else "absent"}) but this head is '
                f'not: set model.head.classifier={kind!r}')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._check_classifier(state_dict, prefix)
        # A joint checkpoint has no tau or scales: keep tau unset and the
        # scales at 1. The joint head's training parts (its loss's buffers,
        # a contrastive branch, ContrastiveClsHead's post-hoc prior) have no
        # use here.
        if self.tau is not None:
            state_dict.setdefault(prefix + 'tau', self.tau.clone())
        if self.scaling is not None:
            state_dict.setdefault(prefix + 'scaling.scales',
                                  self.scaling.scales.detach().clone())
        own = set(self.state_dict(prefix=prefix))
        for key in [k for k in state_dict if k.startswith(tuple(
                prefix + part for part in _JOINT_TRAINING_PARTS))]:
            if key not in own:
                state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self._config_tau is not None:
            self.tau.fill_(self._config_tau)
        if self.tau is not None:
            self.tau_is_set = not math.isnan(self.tau.item())
        self.classifier_loaded = prefix + 'fc.weight' in state_dict
