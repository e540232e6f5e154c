"""Alias of :mod:`mmlt.models.vmf.vmf_estimator`, where this module moved.

The old path keeps working for third-party imports: the alias is the module
itself (private names and patching included).
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module(
    'mmlt.models.vmf.vmf_estimator')
