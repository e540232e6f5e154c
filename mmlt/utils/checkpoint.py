"""A checkpoint is data: what mmlt loads from one, and what it refuses.

Every checkpoint that MMEngine opens goes through
:class:`mmengine.runner.CheckpointLoader`: ``Runner.load_checkpoint`` and
``Runner.resume`` (``load_from``, ``--resume``, ``tools/test.py``),
``init_cfg=dict(type='Pretrained', checkpoint=...)`` and
:func:`mmengine.runner.load_checkpoint`. :func:`register_weights_only_loaders`
(run on ``import mmlt``) registers every scheme of that loader again (local
files, ``http(s)://``, ``torchvision://``, ``open-mmlab://``, ...), wrapped so
that

* nothing is unpickled beyond torch's weights-only allow-list (tensors, plain
  containers, and the few MMEngine objects that :mod:`mmlt.compat` adds), also
  where the scheme's own loader asks for full unpickling: MMEngine downloads
  through ``torch.hub.load_state_dict_from_url``, which passes
  ``weights_only=False``;
* a file that is refused or cannot be read raises
  :class:`CheckpointLoadError`, naming the file and what to do, before
  training or testing starts;
* ``meta['config']`` is dropped: ``Runner.resume`` would execute it as Python
  (to read ``gpu_ids``). MMEngine writes its config text to ``meta['cfg']``,
  which mmlt never executes.
"""
import contextlib
import functools
import logging
import os
import os.path as osp
import pickle
import re
from typing import Callable

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

FORCE_WEIGHTS_ONLY = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'
FORCE_NO_WEIGHTS_ONLY = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'


class CheckpointLoadError(RuntimeError):
    """A checkpoint that torch's weights-only loader refused or could not
    read.

    Args:
        filename (str): The checkpoint's path or URL.
        message (str): What went wrong and what to do; names ``filename``.
    """

    def __init__(self, filename: str, message: str):
        super().__init__(message)
        self.filename = filename


@contextlib.contextmanager
def weights_only_torch_load():
    """Make every ``torch.load`` in the block weights-only, including calls
    that pass ``weights_only=False``.

    Uses torch's own switch, the ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` environment
    variable, and lifts ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for the block.
    """
    saved = {
        name: os.environ.get(name)
        for name in (FORCE_WEIGHTS_ONLY, FORCE_NO_WEIGHTS_ONLY)
    }
    os.environ[FORCE_WEIGHTS_ONLY] = '1'
    os.environ.pop(FORCE_NO_WEIGHTS_ONLY, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_from_local(filename: str, map_location=None):
    """Load a local checkpoint with ``torch.load(weights_only=True)``.

    MMEngine's own local loader, with ``weights_only`` explicit (the name
    is MMEngine's too: :class:`~mmengine.runner.CheckpointLoader` logs the
    backend named after ``load_from_``).

    Args:
        filename (str): Path of the checkpoint (``~`` is expanded).
        map_location: As in :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=True)


def _first_sentence(text: str, limit: int = 300) -> str:
    """The first sentence of an error message, without terminal colours."""
    text = re.sub(r'\x1b\[[0-9;]*m', '', text).strip()
    sentence = re.split(r'\.(?:\s|$)', text, maxsplit=1)[0].strip()
    return sentence[:limit]


def _refusal_reason(error: Exception) -> str:
    """What the weights-only unpickler objected to, without torch's advice
    to allow-list the object or to switch ``weights_only`` off."""
    text = str(error)
    unsafe = re.search(r'GLOBAL (\S+) (?:was not an allowed global|whose '
                       r'module \S+ is blocked)', text)
    if unsafe:
        return f'it pickles {unsafe.group(1)}, which is not allowed'
    found = re.search(r'WeightsUnpickler error:\s*(.+)', text, re.S)
    if found is None:  # torch's preamble, then the unpickler's own message
        found = re.search(r'trusted source\.\s*(.+)', text, re.S)
    return _first_sentence(found.group(1) if found else text) or \
        type(error).__name__


def _checked_load(loader: Callable, filename: str, map_location, *args,
                  **kwargs):
    """Run ``loader`` weights-only; name ``filename`` in any failure."""
    try:
        with weights_only_torch_load():
            checkpoint = loader(filename, map_location, *args, **kwargs)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointLoadError(
            filename,
            f"checkpoint {filename} was refused by torch's weights_only "
            f'loader: {_refusal_reason(error)}. mmlt unpickles only tensors, '
            'plain Python containers and the MMEngine objects allow-listed '
            'in mmlt/compat.py, and runs no code from a checkpoint. If you '
            'trust the file, load it yourself with torch.load(path, '
            "weights_only=False) and torch.save its tensors (its "
            "'state_dict') to a new file.") from error
    except Exception as error:
        raise CheckpointLoadError(
            filename, f'cannot read checkpoint {filename} '
            f'({type(error).__name__}: {_first_sentence(str(error))}). If the '
            'file is truncated or damaged (an interrupted save, copy or '
            'download), copy it again or use an earlier checkpoint.'
        ) from error
    _drop_executable_config(checkpoint, filename)
    return checkpoint


def _drop_executable_config(checkpoint, filename: str) -> None:
    """Remove ``meta['config']``, which ``Runner.resume`` would execute."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and 'config' in meta:
        del meta['config']
        print_log(
            f"ignored meta['config'] of checkpoint {filename}: MMEngine's "
            'resume would run that text as Python code (to read gpu_ids '
            'from it); mmlt runs no code from a checkpoint.',
            logger='current',
            level=logging.WARNING)


def weights_only_loader(loader: Callable) -> Callable:
    """Wrap a :class:`~mmengine.runner.CheckpointLoader` scheme so that it
    unpickles weights-only and names the file when loading fails."""
    if getattr(loader, '_mmlt_weights_only', False):
        return loader

    @functools.wraps(loader)
    def load(filename, map_location=None, *args, **kwargs):
        return _checked_load(loader, filename, map_location, *args, **kwargs)

    load._mmlt_weights_only = True
    return load


def register_weights_only_loaders() -> None:
    """Wrap every registered checkpoint scheme with
    :func:`weights_only_loader`; local files use :func:`load_from_local`.
    Safe to call again."""
    schemes = dict(CheckpointLoader._schemes)
    if not getattr(schemes.get(''), '_mmlt_weights_only', False):
        schemes[''] = load_from_local
    for prefix, loader in schemes.items():
        if not getattr(loader, '_mmlt_weights_only', False):
            CheckpointLoader.register_scheme(
                prefix, weights_only_loader(loader), force=True)


register_weights_only_loaders()
