"""The PCL configs give the distributed process group a timeout longer than
NCCL's default, so that ranks waiting while another clusters are not killed,
and MMEngine hands it to ``init_process_group``."""
import datetime
import os.path as osp
import warnings

import pytest

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# torch.distributed.constants.default_pg_nccl_timeout, in seconds
NCCL_DEFAULT_TIMEOUT = 600

# config -> the least timeout (s) its clustering needs (see the configs).
PCL_CONFIGS = {
    'configs/pcl_fashionmnist.py': 1800,
    'configs/pcl_r50_imagenet.py': 6 * 3600,
}


def load(config):
    return Config.fromfile(osp.join(REPO, config))


def test_nccl_default_timeout_is_ten_minutes():
    from torch.distributed import constants
    assert constants.default_pg_nccl_timeout == datetime.timedelta(
        seconds=NCCL_DEFAULT_TIMEOUT)


@pytest.mark.parametrize('config', sorted(PCL_CONFIGS))
def test_pcl_config_timeout(config):
    cfg = load(config)
    dist_cfg = cfg.env_cfg.dist_cfg
    timeout = dist_cfg.timeout
    assert isinstance(timeout, int)
    assert timeout > NCCL_DEFAULT_TIMEOUT
    assert timeout >= PCL_CONFIGS[config]
    # Merged into the runtime's env_cfg, not replacing it.
    assert dist_cfg.backend == 'nccl'
    assert cfg.env_cfg.mp_cfg.mp_start_method == 'fork'
    # the runtime's (gpu_runtime.py: the autotuner for ImageNet's fixed crops)
    assert cfg.env_cfg.cudnn_benchmark is ('fashion' not in config)


def test_imagenet_clusterings_sized_for():
    """The timeout comment's workload: k up to 100,000, 20 x 5 iterations."""
    cfg = load('configs/pcl_r50_imagenet.py')
    assert max(cfg.model.proto_loss.num_clusters) == 100000
    assert cfg.model.feat_dim == 128
    hook, = [
        h for h in cfg.custom_hooks if h.type == 'mmlt.PrototypeClusteringHook'
    ]
    assert (hook.kmeans_cfg.num_iters, hook.kmeans_cfg.num_restarts) == (20, 5)


def test_init_dist_passes_the_timeout(monkeypatch):
    """MMEngine's init_dist (through mmlt's CPU-safe wrapper) calls
    init_process_group with the config's timeout as a timedelta."""
    import mmlt  # noqa: F401  (installs the wrapper)
    from mmengine.dist import utils as dist_utils

    calls = []
    monkeypatch.setattr(dist_utils.torch_dist, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))
    # init_dist would otherwise set this process's start method to spawn.
    monkeypatch.setattr(dist_utils.mp,
                        'get_start_method',
                        lambda allow_none=False: 'fork')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('MMLT_ALLOW_CPU', '1')  # no GPU: gloo, not an error
    cfg = load('configs/pcl_r50_imagenet.py')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # nccl -> gloo, on a CPU machine
        dist_utils.init_dist('pytorch', **cfg.env_cfg.dist_cfg)
    assert len(calls) == 1
    assert calls[0]['timeout'] == datetime.timedelta(
        seconds=cfg.env_cfg.dist_cfg.timeout)
    assert calls[0]['timeout'] > datetime.timedelta(
        seconds=NCCL_DEFAULT_TIMEOUT)
