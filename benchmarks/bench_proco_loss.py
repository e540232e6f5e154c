"""Benchmark mmlt's ProCoLoss and VMFEstimator against a matmul and a literal
implementation.

Run from the repository root (CPU; a few minutes on 2 cores)::

    python benchmarks/bench_proco_loss.py            # all configurations
    python benchmarks/bench_proco_loss.py --quick    # fewer repetitions, no
                                                     # literal run at p = 2048
    python benchmarks/bench_proco_loss.py --configs 32,1000,1024  # one
    python benchmarks/bench_proco_loss.py --profile 32,8142,1024
    python benchmarks/bench_proco_loss.py --device cuda --amp   # on a GPU
    python benchmarks/bench_proco_loss.py --compile  # compile_logits=True

For every ``(B, C, p)`` it reports, for one contrastive view:

- ``matmul``: ``z @ W.T`` with ``z (B, p)`` and ``W (C, p)`` both requiring
  grad, forward and backward (three ``B x C x p`` products, the cost of a
  linear classifier head), measured in the same process as mmlt's numbers;
- ``loss``: ``ProCoLoss`` forward + backward, including its estimator update
  (the loss updates before computing the logits); ``2 views``: the same with
  view-major features ``(2, B, p)``, both views together;
- ``update``: ``VMFEstimator.update`` alone;
- ``literal``: ``benchmarks/literal_proco.py`` (B x C x p tensors, a Python
  Bessel recurrence with a host sync per step), forward + backward including
  its update, timed once per configuration (it takes seconds);
- kernels: the aten ops of one loss call (each a kernel launch on a GPU),
  with those writing a ``B x C`` tensor and how many of them are float64
  (not counted with ``--compile``, whose fused kernels are not aten ops);
- peak memory: the increase of the process's peak resident set size (Linux
  ``VmHWM``, reset through ``/proc/self/clear_refs`` before each measured call)
  over the resident size just before it, for one call. Each method runs in a
  fresh subprocess with ``MALLOC_MMAP_THRESHOLD_`` fixed, so that large
  tensors are returned to the system when freed and each peak is that call's
  own. (On a GPU one would use ``torch.cuda.max_memory_allocated``.)

``--device cuda`` runs the same measurements on a GPU (synchronising before
and after each timed call; memory from ``torch.cuda.max_memory_allocated``);
``--amp`` runs them under autocast (bfloat16 on a CPU, float16 on CUDA;
``--amp-dtype float16|bfloat16`` picks the dtype; ``--json PATH`` also writes
the measurements to a file, as the GPU kit reads them). The
dtype of every matrix product of one loss call is printed, so a float64
product cannot hide.

Times are the minimum over repetitions (the machine may be shared; the
minimum is the least disturbed run), interleaved between the methods. Both
sides use ``kappa = p R / (1 - R^2)`` (``kappa_method='official'``) so their
loss values can be compared; the estimator is pre-filled with 3 samples per
class, as in the middle of an epoch.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [(256, 100, 128), (32, 1000, 1024), (32, 8142, 1024),
           (32, 8142, 2048)]
TEMPERATURE = 0.1
SAMPLES_PER_CLASS = 3


# ------------------------------------------------------------ measurements
def _status_kib(field):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure(fn):
    """Run ``fn()`` once: (seconds, peak RSS increase in MiB or None).

    The peak is Linux's VmHWM after resetting it to the current RSS.
    """
    gc.collect()
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')  # reset VmHWM to the current RSS
        before = _status_kib('VmRSS')
    except OSError:
        before = None
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    if before is None:
        return seconds, None
    # RSS may shrink after the first read (freed pages): the increase of the
    # peak is never negative.
    return seconds, max(0.0, (_status_kib('VmHWM') - before) / 1024)


def synthetic_data(batch_size, num_classes, feat_dim):
    """Class-clustered unit features: a pre-fill set and one batch."""
    import torch
    import torch.nn.functional as F
    generator = torch.Generator().manual_seed(0)
    centers = F.normalize(
        torch.randn(num_classes, feat_dim, generator=generator), dim=1)

    def sample(labels):
        noise = torch.randn(
            len(labels), feat_dim, generator=generator) / feat_dim**0.5
        return F.normalize(centers[labels] + noise, dim=1)

    prefill_labels = torch.arange(num_classes).repeat(SAMPLES_PER_CLASS)
    prefill = sample(prefill_labels)
    labels = torch.randint(
        0, num_classes, (batch_size, ), generator=generator)
    class_counts = torch.randint(
        1, 500, (num_classes, ), generator=generator).double()
    return prefill, prefill_labels, sample(labels), labels, class_counts


def _autocast(device, amp):
    import contextlib

    import torch
    if not amp:
        return contextlib.nullcontext()
    if isinstance(amp, str):  # --amp-dtype
        return torch.autocast(device, dtype=getattr(torch, amp))
    return torch.autocast(
        device, dtype=torch.float16 if device == 'cuda' else torch.bfloat16)


def product_dtypes(fn):
    """The input dtypes of every matrix product ``fn`` runs (aten level)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    import torch

    class Recorder(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ('mm', 'addmm', 'bmm', 'baddbmm', 'matmul'):
                shapes = [tuple(a.shape) for a in args
                          if isinstance(a, torch.Tensor)]
                dtypes = sorted({str(a.dtype).replace('torch.', '')
                                 for a in args if isinstance(a, torch.Tensor)})
                self.seen.append(f'{name}{shapes}:{"/".join(dtypes)}')
            return func(*args, **(kwargs or {}))

    recorder = Recorder()
    with recorder:
        fn()
    return recorder.seen


def kernel_counts(fn, batch_size, num_classes):
    """Aten ops ``fn`` runs (each a kernel launch on a GPU): all of them, the
    ones writing a ``B x C``-sized tensor, and those of them in float64."""
    from torch.utils._python_dispatch import TorchDispatchMode
    import torch

    class Counter(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.counts = dict(total=0, batch_by_class=0,
                               batch_by_class_float64=0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.counts['total'] += 1
            first = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(first, torch.Tensor) and \
                    first.numel() == batch_size * num_classes:
                self.counts['batch_by_class'] += 1
                if first.dtype == torch.float64:
                    self.counts['batch_by_class_float64'] += 1
            return out

    counter = Counter()
    with counter:
        fn()
    return counter.counts


def worker_mmlt(config, repeats, profile, device='cpu', amp=False,
                compiled=False):
    import torch

    from mmlt.models.losses import ProCoLoss
    batch_size, num_classes, feat_dim = config
    prefill, prefill_labels, features, labels, class_counts = \
        synthetic_data(*config)
    prefill, prefill_labels = prefill.to(device), prefill_labels.to(device)
    features, labels = features.to(device), labels.to(device)
    loss_module = ProCoLoss(
        num_classes,
        feat_dim,
        temperature=TEMPERATURE,
        class_counts=class_counts,
        estimator=dict(kappa_method='official'),
        **(dict(compile_logits=True) if compiled else {})).to(device)
    estimator = loss_module.estimator
    for start in range(0, len(prefill), 4096):
        estimator.update(prefill[start:start + 4096],
                         prefill_labels[start:start + 4096])
    del prefill, prefill_labels
    cuda = device == 'cuda'

    def sync():
        if cuda:
            torch.cuda.synchronize()

    z = features.clone().requires_grad_(True)
    weight = torch.randn(
        num_classes, feat_dim, device=device, requires_grad=True)
    grad_out = torch.randn(batch_size, num_classes, device=device)

    def matmul():
        with _autocast(device, amp):
            out = z @ weight.t()
        out.backward(grad_out.to(out.dtype))
        z.grad = weight.grad = None

    loss_values = []

    def loss():
        with _autocast(device, amp):
            value = loss_module(z, labels)
        value.backward()
        loss_values.append(value.detach())
        z.grad = None

    two_views = torch.stack([features, features.flip(0)]).requires_grad_(True)

    def loss_two_views():
        with _autocast(device, amp):
            value = loss_module(two_views, labels)
        value.backward()
        two_views.grad = None

    def update():
        estimator.update(features, labels)

    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile
        loss()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                loss()
        print(prof.key_averages().table(
            sort_by='self_cpu_time_total', row_limit=20))
        return None

    methods = dict(
        matmul=matmul, loss=loss, loss_two_views=loss_two_views,
        update=update)
    times = {name: [] for name in methods}
    for name, fn in methods.items():  # warm-up
        fn()
    sync()
    for _ in range(repeats):
        for name, fn in methods.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    if cuda:
        memory = {}
        for name, fn in methods.items():
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            sync()
            memory[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        memory = {name: measure(fn)[1] for name, fn in methods.items()}
    state_bytes = sum(b.numel() * b.element_size()
                      for b in estimator.buffers())
    return dict(
        time={name: min(values) for name, values in times.items()},
        memory=memory,
        first_loss=float(loss_values[0]),
        state_mib=state_bytes / 2**20,
        products=dict(
            loss=product_dtypes(loss), matmul=product_dtypes(matmul)),
        # the compiled path's fused kernels are not aten ops
        kernels=None if compiled else kernel_counts(
            loss, batch_size, num_classes))


def worker_literal(config, repeats):
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from literal_proco import LiteralProCo
    batch_size, num_classes, feat_dim = config
    prefill, prefill_labels, features, labels, class_counts = \
        synthetic_data(*config)
    literal = LiteralProCo(
        num_classes,
        feat_dim,
        torch.log(class_counts / class_counts.sum()),
        temperature=TEMPERATURE)
    # Pre-fill the state directly: its own update would build C x (3C) x p.
    sums = torch.zeros(num_classes, feat_dim, dtype=torch.float64)
    sums.index_add_(0, prefill_labels, prefill.double())
    for estimator in (literal.estimator, literal.estimator_old):
        estimator.mean = (sums / SAMPLES_PER_CLASS).float()
        estimator.amount = torch.full((num_classes, ),
                                      float(SAMPLES_PER_CLASS))
    del prefill, prefill_labels, sums
    z = features.clone().requires_grad_(True)
    loss_values = []

    def loss():
        value = literal(z, labels)
        value.backward()
        loss_values.append(value.item())
        z.grad = None

    def update():
        literal.update(features, labels)

    times = dict(loss=[], update=[])
    memory = {}
    # The first call is timed too: at large C one call takes many seconds.
    for name, fn in (('loss', loss), ('update', update)):
        seconds, memory[name] = measure(fn)
        times[name].append(seconds)
        for _ in range(repeats - 1):
            times[name].append(_timed(fn))
    return dict(
        time={name: min(values) for name, values in times.items()},
        memory=memory,
        first_loss=loss_values[0])


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ driver
def run_worker(kind, config, repeats, threads, device='cpu', amp=False,
               compiled=False):
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['MALLOC_MMAP_THRESHOLD_'] = str(128 * 1024)
    command = [
        sys.executable,
        os.path.abspath(__file__), '--worker', kind, '--config',
        ','.join(map(str, config)), '--repeats',
        str(repeats), '--device', device
    ] + (['--amp'] if amp is True else []) + (
        ['--compile'] if compiled else [])
    if isinstance(amp, str):
        command += ['--amp-dtype', amp]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f'{kind} worker failed for {config}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt_mib(value):
    return 'n/a' if value is None else f'{value:.0f}'


def fmt_speedup(ratio):
    """Eight characters: whole numbers from 10x up, two decimals below."""
    return f'{ratio:7.0f}x' if ratio >= 10 else f'{ratio:7.2f}x'


def parse_config(text):
    """``'B,C,P'`` -> ``(B, C, P)``."""
    values = tuple(int(v) for v in text.split(','))
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f'expected three positive integers B,C,P, got {text!r}')
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='3 repetitions; no literal run at p = 2048')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--no-literal', action='store_true')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='intra-op threads of every measurement (default 1: on a shared '
        'machine, OpenMP threads waiting for a descheduled peer make '
        '2-thread timings erratic)')
    parser.add_argument('--profile', metavar='B,C,P',
                        help='print a torch.profiler table of the loss')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'],
                        help='where to run mmlt and the matmul')
    parser.add_argument('--amp', action='store_true',
                        help='autocast: bfloat16 on a CPU, float16 on CUDA')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'],
                        help='autocast in this dtype (implies --amp)')
    parser.add_argument(
        '--compile', action='store_true',
        help='ProCoLoss(compile_logits=True): the element-wise logits '
        'through torch.compile (compiled in the warm-up call)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the measurements to PATH (JSON)')
    parser.add_argument(
        '--configs', nargs='+', type=parse_config, metavar='B,C,P',
        default=CONFIGS,
        help='the (batch, classes, feature dim) to measure; defaults to '
        + ' '.join(','.join(map(str, c)) for c in CONFIGS))
    parser.add_argument('--worker', choices=['mmlt', 'literal'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--config', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.amp = args.amp_dtype or args.amp
    repeats = args.repeats or (3 if args.quick else 10)

    if args.worker:
        import torch
        torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
        config = tuple(int(v) for v in args.config.split(','))
        if args.worker == 'mmlt':
            out = worker_mmlt(config, repeats, profile=False,
                              device=args.device, amp=args.amp,
                              compiled=args.compile)
        else:
            out = worker_literal(config, repeats)
        print(json.dumps(out))
        return
    if args.profile:
        import torch
        torch.set_num_threads(args.threads)
        sys.path.insert(0, REPO_ROOT)
        worker_mmlt(tuple(int(v) for v in args.profile.split(',')), 1,
                    profile=True, compiled=args.compile)
        return

    import torch
    print(f'torch {torch.__version__}, {args.device}'
          f'{" + autocast" if args.amp else ""}, {args.threads} thread(s), '
          f'{repeats} repetitions (min), tau={TEMPERATURE}')
    rows = []
    for config in args.configs:
        mine = run_worker('mmlt', config, repeats, args.threads,
                          args.device, args.amp, args.compile)
        literal = None
        if not args.no_literal and args.device == 'cpu' and not (
                args.quick and config[2] >= 2048):
            # The literal run takes seconds: time it once (large C) or 3x.
            literal = run_worker('literal', config,
                                 1 if config[1] >= 1000 else 3, args.threads)
        rows.append((config, mine, literal))
        _print_row(config, mine, literal)
        print('  matrix products of one loss call: ' +
              ', '.join(mine['products']['loss']))
        if mine.get('kernels'):
            k = mine['kernels']
            print(f'  aten ops of one loss call (forward + backward): '
                  f'{k["total"]}, of them {k["batch_by_class"]} writing a '
                  f'B x C tensor ({k["batch_by_class_float64"]} in float64)')
    _print_tables(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([dict(config=config, mmlt=mine, literal=literal)
                       for config, mine, literal in rows], f, indent=1)


def _print_row(config, mine, literal):
    t = mine['time']
    line = (f'done {config}: matmul {t["matmul"] * 1e3:.2f} ms, loss '
            f'{t["loss"] * 1e3:.2f} ms, update {t["update"] * 1e3:.2f} ms')
    if literal:
        line += f', literal loss {literal["time"]["loss"]:.3g} s'
    print(line, flush=True)


def _print_tables(rows):
    print('\nTime (ms; "2 views": both views of one call); ratios to the '
          'one-view matmul forward+backward; speed-ups over the literal '
          'implementation')
    header = (f'{"B, C, p":>16} | {"matmul":>7} | {"loss":>7} {"x mm":>5} | '
              f'{"2 views":>7} {"x mm":>5} | '
              f'{"update":>7} {"x mm":>5} | {"literal loss":>12} '
              f'{"speed-up":>8} | {"lit. update":>11} {"speed-up":>8} | '
              f'{"loss rel. diff":>14}')
    print(header)
    print('-' * len(header))
    for config, mine, literal in rows:
        t = mine['time']
        loss_ratio = t['loss'] / t['matmul']
        update_ratio = t['update'] / t['matmul']
        if literal:
            lt = literal['time']
            literal_cols = (
                f'{lt["loss"] * 1e3:12.1f} '
                f'{fmt_speedup(lt["loss"] / t["loss"])} | '
                f'{lt["update"] * 1e3:11.1f} '
                f'{fmt_speedup(lt["update"] / t["update"])} | ' +
                f'{abs(literal["first_loss"] / mine["first_loss"] - 1):14.1e}')
        else:
            literal_cols = f'{"-":>12} {"-":>8} | {"-":>11} {"-":>8} | ' \
                           f'{"-":>14}'
        per_view = t['loss_two_views'] / 2
        print(f'{str(config):>16} | {t["matmul"] * 1e3:7.2f} | '
              f'{t["loss"] * 1e3:7.2f} {loss_ratio:5.2f} | '
              f'{2 * per_view * 1e3:7.2f} {2 * per_view / t["matmul"]:5.2f} | '
              f'{t["update"] * 1e3:7.2f} {update_ratio:5.2f} | ' +
              literal_cols)

    print('\nPeak memory of one call (MiB; CPU: peak RSS increase, CUDA: '
          'peak allocated) and the estimator state (buffers)')
    header = (f'{"B, C, p":>16} | {"matmul":>7} | {"loss":>7} | '
              f'{"2 views":>7} | '
              f'{"update":>7} | {"literal loss":>12} | '
              f'{"lit. update":>11} | {"state":>7}')
    print(header)
    print('-' * len(header))
    for config, mine, literal in rows:
        m = mine['memory']
        lm = literal['memory'] if literal else {}
        print(f'{str(config):>16} | {fmt_mib(m["matmul"]):>7} | '
              f'{fmt_mib(m["loss"]):>7} | {fmt_mib(m["loss_two_views"]):>7} | '
              f'{fmt_mib(m["update"]):>7} | '
              f'{fmt_mib(lm.get("loss")) if literal else "-":>12} | '
              f'{fmt_mib(lm.get("update")) if literal else "-":>11} | '
              f'{mine["state_mib"]:7.0f}')

    print('\nTargets (ratios to the one-view matmul fwd+bwd): loss <= 0.8x '
          'at C = 8142, <= 1.0x at C = 1000 (the floor is about 0.7x: the '
          'forward product and the gradient for the features); update '
          '<= 0.5x; 2 views <= 2.2x at (32, 8142, 2048); >= 100x faster than '
          'literal at C = 8142')
    for config, mine, literal in rows:
        if config[1] < 1000:
            continue
        t = mine['time']
        loss_target = 0.8 if config[1] >= 8142 else 1.0
        checks = [
            (f'loss <= {loss_target}x',
             t['loss'] <= loss_target * t['matmul']),
            ('update <= 0.5x', t['update'] <= 0.5 * t['matmul']),
        ]
        if config == (32, 8142, 2048):
            checks.append(('2 views <= 2.2x',
                           t['loss_two_views'] <= 2.2 * t['matmul']))
        if literal and config[1] >= 8142:
            checks.append(('>= 100x literal',
                           literal['time']['loss'] >= 100 * t['loss']))
        print(f'{str(config):>16}: ' + ', '.join(
            f'{name} {"met" if ok else "MISSED"}' for name, ok in checks))


if __name__ == '__main__':
    main()
