"""Import an OpenMMLab host (MMPretrain, MMDetection) for the integrations."""
import importlib
import importlib.util
import warnings
from typing import Sequence


def host_available(modules: Sequence[str]) -> bool:
    """Whether a host is installed and the modules mmlt builds on import.

    The registries import the integrations whenever an ``mmlt.X`` type is
    looked up, so a host that is installed but broken would otherwise break
    every mmlt config, not only the ones that use it: for example an
    MMDetection next to ``mmcv-lite`` (``No module named 'mmcv._ext'``) or one
    that refuses the installed mmcv version (its ``__init__`` asserts a
    range) would stop a classification run. Such a failure is reported as a
    warning that names the host, the error and the fix, and mmlt's parts for
    that host stay unregistered.

    Args:
        modules (Sequence[str]): The host package first (``'mmdet'``), then
            the submodules the integration imports (``'mmdet.models'``).

    Returns:
        bool: True if the host is installed and all ``modules`` import.
    """
    host = modules[0]
    if importlib.util.find_spec(host) is None:
        return False
    try:
        for name in modules:
            importlib.import_module(name)
    except (ImportError, AssertionError) as error:
        warnings.warn(
            f'mmlt: {host} is installed but `import {name}` failed '
            f'({type(error).__name__}: {error}); the mmlt components that '
            f'need {host} are not registered. Install versions that work '
            f'together (full mmcv with its ops, not mmcv-lite), e.g. '
            f"pip install -e '.[all]' -c requirements/constraints.txt.",
            RuntimeWarning,
            stacklevel=2)
        return False
    return True
