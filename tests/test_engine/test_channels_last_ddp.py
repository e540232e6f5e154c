"""mmlt.ChannelsLastDistributedDataParallel built by a real Runner from
``model_wrapper_cfg`` on 2 gloo processes: buffers are not broadcast (each
rank's BatchNorm statistics are those of its own batches), and
``find_unused_parameters`` from the config's top level or from
``model_wrapper_cfg`` reaches DDP (the model has a parameter no loss uses)."""
import os

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.multiprocessing import ProcessRaisedException
from torch.utils.data import Dataset

import mmlt.engine  # noqa: F401  (mmlt.compat, the wrapper's registration)
from dist_launch import run_two_ranks

BATCH, N_ITERS, WORLD = 4, 3, 2
WRAPPER = 'mmlt.ChannelsLastDistributedDataParallel'


def rows():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH * N_ITERS * WORLD, 3, generator=gen) * 2 + 1
    return x, x @ torch.tensor([0.5, -1.0, 2.0])


class Rows(Dataset):

    def __init__(self):
        self.x, self.y = rows()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class WithUnusedHead(BaseModel):
    """BatchNorm on the inputs, a used and an unused linear head."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 1)
        self.unused = nn.Linear(3, 1)  # like stage 1's fc without a loss

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.fc(self.bn(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


def train_two_ranks(rank, port, work_dir, where):
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.manual_seed(0)
    # Runner reads model_wrapper_cfg and find_unused_parameters from its cfg
    wrapper_cfg = dict(type=WRAPPER)
    cfg = dict(model_wrapper_cfg=wrapper_cfg)
    if where == 'model_wrapper_cfg':
        wrapper_cfg['find_unused_parameters'] = True
    elif where == 'top level':
        cfg['find_unused_parameters'] = True
    runner = Runner(
        model=WithUnusedHead(),
        work_dir=work_dir,
        experiment_name=f'ddp_{where.replace(" ", "_")}',
        train_dataloader=dict(
            dataset=Rows(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=BATCH,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=None),
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=60)),
        cfg=cfg,
        default_scope='mmengine')
    runner.train()
    ddp = runner.model
    return dict(
        type=type(ddp).__name__,
        broadcast_buffers=ddp.broadcast_buffers,
        find_unused_parameters=ddp.find_unused_parameters,
        iters=runner.iter,
        state={k: v.detach().clone()
               for k, v in ddp.module.state_dict().items()})


def own_batches_bn(rank):
    """BatchNorm statistics of a fresh layer fed only this rank's batches:
    DefaultSampler without shuffling gives rank r the samples r, r + 2, ..."""
    x, _ = rows()
    mine = x[rank::WORLD]
    bn = nn.BatchNorm1d(3)
    for i in range(N_ITERS):
        bn(mine[i * BATCH:(i + 1) * BATCH])
    return bn.state_dict()


@pytest.mark.parametrize('where', ['top level', 'model_wrapper_cfg'])
def test_wrapper_keeps_buffers_local_and_takes_find_unused_parameters(
        tmp_path, port, where):
    results = run_two_ranks(train_two_ranks, port, str(tmp_path), where,
                            timeout=120)
    for rank, result in enumerate(results):
        assert result['type'] == 'ChannelsLastDistributedDataParallel'
        assert result['broadcast_buffers'] is False
        assert result['find_unused_parameters'] is True
        # every step ran although `unused` never gets a gradient
        assert result['iters'] == N_ITERS
        expected = own_batches_bn(rank)
        for name in ('running_mean', 'running_var', 'num_batches_tracked'):
            torch.testing.assert_close(result['state'][f'bn.{name}'],
                                       expected[name])
    # DDP kept the weights identical; the statistics differ between ranks
    rank0, rank1 = (r['state'] for r in results)
    for key in ('fc.weight', 'fc.bias', 'unused.weight', 'unused.bias'):
        assert torch.equal(rank0[key], rank1[key]), key
    assert not torch.equal(rank0['bn.running_mean'], rank1['bn.running_mean'])


def test_without_find_unused_parameters_ddp_refuses_the_unused_head(
        tmp_path, port):
    # the control: this model does need find_unused_parameters
    with pytest.raises(ProcessRaisedException,
                       match='did not receive grad|unused parameters'):
        run_two_ranks(train_two_ranks, port, str(tmp_path), 'nowhere',
                      timeout=120)
