import os
import socket
import sys

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Keep each test process to the machine's cores without oversubscription.
os.environ.setdefault('OMP_NUM_THREADS', '1')


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def port():
    return free_port()


def pytest_collection_modifyitems(config, items):
    """A test that asks for a free ``port`` starts a real 2-process job."""
    for item in items:
        if 'port' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.dist)


@pytest.fixture(autouse=True)
def _unformatted_config_text(monkeypatch):
    """Skip yapf in ``Config.pretty_text`` for in-process Runners.

    MMEngine formats the whole config with yapf when a Runner starts and at
    every checkpoint; on the RandAugment configs that is 3-17 s a call on
    these 2 cores. The unformatted text is the same valid Python, and no test
    checks its layout.
    """
    try:
        import mmengine.config.config as mmengine_config
    except ImportError:
        return
    monkeypatch.setattr(mmengine_config, 'FormatCode',
                        lambda text, **kwargs: (text, False))
