"""A two-process gloo launcher shared by the distributed tests.

Import it from a test file as ``from dist_launch import run_two_ranks,
init_gloo``; pytest puts ``tests/`` (the directory of ``tests/conftest.py``)
on ``sys.path``.
"""
import os
import tempfile
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

WORLD_SIZE = 2


def _run_and_keep(rank: int, worker, out_dir: str, port: int, *args) -> None:
    """Child entry point: run the worker and save what it returns."""
    result = worker(rank, port, *args)
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pth'))


def run_two_ranks(worker, port: int, *args, timeout: float = 60.0) -> list:
    """Run ``worker(rank, port, *args)`` on two processes; fail on timeout.

    Args:
        worker (Callable): Called in each child as ``worker(rank, port,
            *args)``; it should call :func:`init_gloo` itself. What it
            returns (tensors, numbers, containers of them) is handed back to
            the test, which asserts on it.
        port (int): A free TCP port for the rendezvous (the ``port`` fixture
            of ``tests/conftest.py``).
        *args: Further arguments passed to ``worker``.
        timeout (float): Seconds to wait for both processes before they are
            terminated and the test fails, so a deadlock cannot hang the
            suite. Defaults to 60.

    Returns:
        list: The workers' return values, rank 0 first.
    """
    # fork starts in milliseconds where spawn re-imports torch (seconds).
    start_method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    with tempfile.TemporaryDirectory() as out_dir:
        context = mp.start_processes(
            _run_and_keep,
            args=(worker, out_dir, port) + args,
            nprocs=WORLD_SIZE,
            join=False,
            start_method=start_method)
        deadline = time.monotonic() + timeout
        # join raises ProcessRaisedException when a child fails.
        while not context.join(timeout=0.2):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.terminate()
                pytest.fail(f'2-process run did not finish in {timeout} s')
        # Files the children of this test wrote: not untrusted input.
        return [
            torch.load(
                os.path.join(out_dir, f'rank{rank}.pth'), weights_only=False)
            for rank in range(WORLD_SIZE)
        ]


def init_gloo(rank: int, port: int, timeout: float = 30.0) -> None:
    """Join a two-rank gloo group on 127.0.0.1:``port`` with one thread.

    Args:
        rank (int): This process's rank, 0 or 1.
        port (int): The rendezvous port given to :func:`run_two_ranks`.
        timeout (float): Seconds a collective may wait for the other rank
            before it raises. Defaults to 30.
    """
    # Two ranks on a shared machine: one thread each avoids oversubscription.
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    torch_dist.init_process_group(
        'gloo',
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=timedelta(seconds=timeout))
