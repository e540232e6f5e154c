"""Seeds derived from where a run is, and the generator states of a process.

:class:`mmlt.ExactResumeHook` seeds every random draw from the run's position
(the epoch and index of a sample, the rank and iteration of a step), so a
resumed run draws what an uninterrupted one would have drawn; the datasets
that declare :class:`mmlt.engine.protocols.SeedsItems` use the data seeds.
"""
import hashlib
import random
from contextlib import contextmanager

import numpy as np
import torch

# Domains of the derived seeds, so a data seed never equals a step seed.
DATA_DOMAIN, STEP_DOMAIN, EPOCH_DOMAIN, BRANCH_DOMAIN = 1, 2, 3, 4


def derived_seed(*keys: int) -> int:
    """A 32-bit seed from integers, well mixed (BLAKE2b of their digits)."""
    text = ','.join(str(int(k)) for k in keys).encode()
    return int.from_bytes(
        hashlib.blake2b(text, digest_size=4).digest(), 'little')


def seed_everything(seed: int, cuda: bool = True) -> None:
    """Seed Python's, NumPy's and torch's global generators.

    Args:
        seed (int): The seed.
        cuda (bool): Also every CUDA device (lazily), as ``torch.manual_seed``
            does. Data pipelines run on the CPU and need only the CPU
            generator, which is much cheaper to seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


@contextmanager
def branch_random_stream(stream: int = 0):
    """Build an optional module on its own CPU random stream (paired seeds).

    Inside the block, torch's CPU generator is seeded from the global
    generator's next draw (mixed by :func:`derived_seed`); on leaving it the
    global generator is back in the state it entered (``fork_rng``). So the
    modules built and initialised afterwards draw exactly what they draw in a
    model without the optional module: a model with a contrastive branch and
    the same model without it, built after one ``torch.manual_seed``, start
    from bitwise equal weights in every module they share (a paired
    comparison), and the branch's own weights still follow the seed. CUDA
    generators are not touched (models are built on the CPU).

    Args:
        stream (int): Which stream: two optional modules built one after
            the other need different ones, or they draw the same numbers.
            Defaults to 0 (the contrastive branch).

    Example:
        >>> with branch_random_stream():
        ...     projector = nn.Linear(1024, 128)
    """
    with torch.random.fork_rng(devices=[]):
        peek = int(torch.randint(2**31 - 1, ()))
        torch.default_generator.manual_seed(
            derived_seed(BRANCH_DOMAIN, peek, *((stream, ) if stream else ())))
        yield


def random_states() -> dict:
    """This process's generator states.

    Of CUDA, only the current device's generator: a process trains on one
    device, and a resumed process may see fewer devices than the one that
    saved (another ``CUDA_VISIBLE_DEVICES``, another world size).
    """
    states = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`random_states` returned.

    Checkpoints written before one CUDA state per process hold a list of
    every visible device's; the current device's entry is restored when it
    exists.
    """
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    cuda = states.get('cuda')
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, (list, tuple)):
        device = torch.cuda.current_device()
        if device >= len(cuda):
            return
        cuda = cuda[device]
    torch.cuda.set_rng_state(cuda)
