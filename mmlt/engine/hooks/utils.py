"""What mmlt's hooks read of a runner that MMEngine keeps private.

MMEngine's own hooks read the same attributes (EMAHook: ``_resume``); the
helpers keep those reads in one place.
"""
from typing import Optional

from mmengine.runner import find_latest_checkpoint


def is_resuming(runner) -> bool:
    """Whether the runner resumes (``--resume``) rather than loads weights
    (``load_from``)."""
    return bool(getattr(runner, '_resume', False))


def checkpoint_to_load(runner) -> Optional[str]:
    """The checkpoint the runner loads or resumes from: ``load_from``, or on
    ``--resume`` without one the latest in the work dir; None if none."""
    path = getattr(runner, '_load_from', None)
    if path is None and is_resuming(runner) and runner.work_dir:
        path = find_latest_checkpoint(runner.work_dir)
    return path
