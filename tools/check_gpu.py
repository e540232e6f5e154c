"""First-run check of a GPU machine, after ``tools/setup_env.sh``::

    python tools/check_gpu.py

1. mmcv's compiled ops load (and which CUDA they were compiled with).
2. CPU half: mmcv's ``nms``, ``batched_nms`` and ``RoIAlign`` (forward and
   backward), the ops of the Mask R-CNN configs, against closed forms and
   against torchvision's implementations.
3. GPU half (skipped, with a message, when torch sees no GPU): the same ops on
   CUDA against their CPU results (and RoIAlign in float16, as under
   ``--amp``), then a few training iterations of
   ``configs/proco_fashionmnistlt.py`` and of the toy LVIS ProCo config, each
   with and without ``--amp``, printing iterations per second and peak memory.

Every failure is printed with its likely fix. The exit code is 0 when all that
ran passed (also when the GPU half was skipped), 1 otherwise.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook

# Let `python tools/check_gpu.py` work from a source checkout.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'
CLS_CONFIG = osp.join(REPO, 'configs', 'proco_fashionmnistlt.py')
DET_CONFIG = osp.join(REPO, 'configs', 'lvis', 'toy',
                      'mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py')
#: The toy LVIS set the detection check trains on: small, built in seconds.
TOY_LVIS_KWARGS = dict(n_max=40, imb_factor=10, val_images_per_category=1)
IOU_THR = 0.5
ROI_OUTPUT, ROI_SCALE = (7, 7), 0.25

#: (text in an error, fix) for the failures a fresh GPU set-up meets.
KNOWN_FAILURES = (
    ('implementation for device cuda',
     'this mmcv has CPU kernels only: rebuild it with CUDA kernels, '
     '`MMLT_CUDA=1 bash tools/setup_env.sh` (docs/gpu_install.md)'),
    ('no kernel image is available',
     'mmcv was compiled for other GPU architectures: rebuild for this GPU, '
     '`MMLT_CUDA=1 TORCH_CUDA_ARCH_LIST={capability} '
     'bash tools/setup_env.sh`'),
    ('undefined symbol',
     "mmcv's _ext was built against another torch: rebuild it with "
     '`bash tools/setup_env.sh` (the wheel cache is keyed by the torch '
     'version)'),
    ('out of memory',
     'the GPU is too small or busy for this batch: free it, or pass '
     '--cfg-options train_dataloader.batch_size=N with a smaller N'),
    ('driver',
     'the NVIDIA driver is missing or older than torch '
     '{torch_cuda} needs: update the driver (`nvidia-smi` shows its CUDA '
     'version)'),
)


def say(status: str, message: str) -> None:
    print(f'[check_gpu] {status:<5} {message}', flush=True)


def failure_hint(error: str) -> str:
    """The likely fix of a failure, from the text of its error (the first
    match of :data:`KNOWN_FAILURES`)."""
    capability = ''
    if torch.cuda.is_available():
        capability = '{}.{}'.format(*torch.cuda.get_device_capability())
    for needle, fix in KNOWN_FAILURES:
        if needle in error.lower():
            return fix.format(capability=capability or '<major.minor>',
                              torch_cuda=torch.version.cuda)
    return ('not a known set-up failure: see the traceback above and '
            'docs/gpu_install.md')


# ---------------------------------------------------------------- the ops --
def load_ops() -> Dict[str, str]:
    """Import mmcv's compiled ops and say what they were compiled with.

    Raises:
        ImportError: mmcv or its ``_ext`` library does not load.
    """
    import mmcv
    from mmcv import ops
    return dict(
        mmcv=mmcv.__version__,
        cuda=ops.get_compiling_cuda_version(),
        compiler=ops.get_compiler_version(),
        torch=torch.__version__,
        torch_cuda=str(torch.version.cuda))


def make_op_inputs(seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random CPU inputs of the ops, the sizes of a small detector's step.

    Boxes are ``(200, 4)`` xyxy in a 128x128 image with distinct scores (so
    NMS has no ties); features ``(2, 8, 32, 32)`` are a stride-4 level under
    16 RoIs ``(16, 5)`` (batch index, xyxy in image pixels).
    """
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(200, 2, generator=gen) * 100
    wh = 4 + torch.rand(200, 2, generator=gen) * 36
    roi_xy = torch.rand(16, 2, generator=gen) * 80
    roi_wh = 8 + torch.rand(16, 2, generator=gen) * 40
    return dict(
        boxes=torch.cat([xy, xy + wh], 1),
        scores=(torch.randperm(200, generator=gen).float() + 1) / 201,
        labels=torch.randint(0, 10, (200, ), generator=gen),
        features=torch.randn(2, 8, 32, 32, generator=gen),
        rois=torch.cat([
            torch.randint(0, 2, (16, 1), generator=gen).float(), roi_xy,
            roi_xy + roi_wh
        ], 1),
        roi_grad=torch.randn(16, 8, *ROI_OUTPUT, generator=gen))


def run_ops(inputs: Dict[str, torch.Tensor],
            device: str = 'cpu',
            dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Run nms, batched_nms and RoIAlign forward/backward on ``device``.

    Returns:
        dict: CPU results: kept indices (int64) and boxes/scores of both NMS
        variants, RoIAlign's output ``(16, 8, 7, 7)`` and its gradient with
        respect to the features ``(2, 8, 32, 32)``, in float32.
    """
    from mmcv.ops import batched_nms, nms, roi_align
    x = {k: v.to(device) for k, v in inputs.items()}
    dets, keep = nms(x['boxes'], x['scores'], IOU_THR)
    bdets, bkeep = batched_nms(x['boxes'], x['scores'], x['labels'],
                               dict(type='nms', iou_threshold=IOU_THR))
    features = x['features'].to(dtype, copy=True).requires_grad_()
    out = roi_align(features, x['rois'].to(dtype), ROI_OUTPUT, ROI_SCALE, 0,
                    'avg', True)
    out.backward(x['roi_grad'].to(dtype))
    results = {
        'nms.keep': keep,
        'nms.dets': dets,
        'batched_nms.keep': bkeep,
        'batched_nms.dets': bdets,
        'roi_align.output': out.detach(),
        'roi_align.grad': features.grad,
    }
    return {
        k: v.cpu().long() if k.endswith('.keep') else v.cpu().float()
        for k, v in results.items()
    }


def compare_results(reference: Dict[str, torch.Tensor],
                    candidate: Dict[str, torch.Tensor],
                    atol: float = 1e-4,
                    rtol: float = 1e-4) -> List[str]:
    """Differences between two :func:`run_ops` results; empty if equal.

    Integer results (kept indices) must be identical, floating ones close.
    """
    problems = []
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None:
            problems.append(f'{name}: missing')
        elif got.shape != ref.shape:
            problems.append(f'{name}: shape {tuple(got.shape)}, expected '
                            f'{tuple(ref.shape)}')
        elif not ref.is_floating_point():
            if not torch.equal(got, ref):
                differ = (got != ref).nonzero()[:1].flatten().tolist()
                problems.append(f'{name}: differs first at {differ}')
        elif not torch.allclose(got, ref, atol=atol, rtol=rtol):
            problems.append(f'{name}: max |difference| '
                            f'{(got - ref).abs().max().item():.3g} > '
                            f'{atol} + {rtol} * |expected|')
    return problems


def closed_form_problems(device: str = 'cpu') -> List[str]:
    """The ops on cases with known answers.

    NMS: four boxes; B overlaps A with IoU 90/110, D overlaps A with IoU
    50/150, so at IoU 0.5 NMS keeps A, C, D, and batched NMS with B in its
    own class keeps all four. RoIAlign (aligned) of a linear image
    ``f(y, x) = 2x + 3y + 1`` averages bilinear samples placed symmetrically
    in each bin, so every bin equals ``f`` at the bin centre; with an all-ones
    output gradient each bin spreads weight 1 over the image, so the input
    gradient sums to the number of bins.
    """
    from mmcv.ops import batched_nms, nms, roi_align
    problems = []
    boxes = torch.tensor([[0., 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30],
                          [0, 5, 10, 15]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6], device=device)
    _, keep = nms(boxes, scores, IOU_THR)
    if keep.cpu().tolist() != [0, 2, 3]:
        problems.append(f'nms kept {keep.cpu().tolist()}, expected [0, 2, 3]')
    _, keep = batched_nms(boxes, scores,
                          torch.tensor([0, 1, 0, 0], device=device),
                          dict(type='nms', iou_threshold=IOU_THR))
    if keep.cpu().tolist() != [0, 1, 2, 3]:
        problems.append(f'batched_nms kept {keep.cpu().tolist()}, expected '
                        '[0, 1, 2, 3]')

    ys, xs = torch.meshgrid(
        torch.arange(32.), torch.arange(32.), indexing='ij')
    image = (2 * xs + 3 * ys + 1)[None, None].to(device).requires_grad_()
    rois = torch.tensor([[0., 2, 3, 20, 28], [0, 5.5, 4.25, 11, 9]],
                        device=device)
    out = roi_align(image, rois, ROI_OUTPUT, 1.0, 0, 'avg', True)
    steps = (torch.arange(7.) + 0.5) / 7
    expected = []
    for _, x1, y1, x2, y2 in rois.cpu().tolist():
        cx = x1 - 0.5 + steps * (x2 - x1)  # aligned: pixel centres at +0.5
        cy = y1 - 0.5 + steps * (y2 - y1)
        expected.append(2 * cx[None, :] + 3 * cy[:, None] + 1)
    expected = torch.stack(expected)[:, None]
    error = (out.detach().cpu() - expected).abs().max().item()
    if error > 1e-3:
        problems.append(f'RoIAlign of a linear image: max |error| {error:.3g}')
    out.sum().backward()
    total = image.grad.sum().item()
    if abs(total - out.numel()) > 1e-3:
        problems.append(f'RoIAlign gradient sums to {total:.6g}, expected '
                        f'{out.numel()}')
    return problems


def torchvision_problems(inputs: Dict[str, torch.Tensor],
                         results: Dict[str, torch.Tensor]) -> List[str]:
    """mmcv's CPU results against torchvision's nms and roi_align."""
    from torchvision.ops import nms, roi_align
    keep = nms(inputs['boxes'], inputs['scores'], IOU_THR)
    features = inputs['features'].detach().clone().requires_grad_()
    out = roi_align(
        features,
        inputs['rois'],
        ROI_OUTPUT,
        spatial_scale=ROI_SCALE,
        sampling_ratio=0,
        aligned=True)
    out.backward(inputs['roi_grad'])
    reference = {
        'nms.keep': keep,
        'roi_align.output': out.detach(),
        'roi_align.grad': features.grad
    }
    return compare_results(reference,
                           {k: results[k]
                            for k in reference}, atol=1e-5)


def check_ops(device: str) -> List[str]:
    """All op checks on ``device`` ('cpu': closed forms and torchvision;
    'cuda': closed forms, CUDA against CPU, float16 RoIAlign)."""
    inputs = make_op_inputs()
    problems = [f'closed form: {p}' for p in closed_form_problems(device)]
    cpu = run_ops(inputs, 'cpu')
    if device == 'cpu':
        return problems + [
            f'vs torchvision: {p}' for p in torchvision_problems(inputs, cpu)
        ]
    # atomicAdd order makes the CUDA gradient differ in the last bits
    problems += [
        f'CUDA vs CPU: {p}'
        for p in compare_results(cpu, run_ops(inputs, device))
    ]
    half = run_ops(inputs, device, torch.float16)
    problems += [
        f'float16 vs float32 RoIAlign: {p}' for p in compare_results(
            {k: v for k, v in cpu.items() if k.startswith('roi_align')},
            half, atol=2e-2, rtol=1e-2)
    ]
    return problems


# ------------------------------------------------------------- training --
class IterationTimer(Hook):
    """Times the iterations after ``warmup`` and keeps the last loss."""

    priority = 'LOWEST'

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.stamps = []
        self.loss = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the timing, not the step, waits
        self.stamps.append(time.perf_counter())
        if outputs and 'loss' in outputs:
            self.loss = float(torch.as_tensor(outputs['loss']).detach())

    def iterations_per_second(self) -> Optional[float]:
        timed = self.stamps[self.warmup:]
        if len(timed) < 2:
            return None
        return (len(timed) - 1) / (timed[-1] - timed[0])


def short_run_config(config: str, work_dir: str, iters: int,
                     data_root: str, amp, cfg_options=None):
    """The config as a short iteration-based training run: no validation,
    no checkpoints, data from ``data_root``, ``--amp`` if asked (``amp``:
    False, True for the device's default dtype, or ``--amp-dtype``'s
    'float16' / 'bfloat16'), then ``cfg_options`` (as ``--cfg-options``)."""
    from mmlt.utils.launch import enable_amp, load_config
    cfg = load_config(config)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.log_level = 'WARNING'
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    for key in ('val', 'test'):
        cfg[f'{key}_cfg'] = cfg[f'{key}_dataloader'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=iters)
    cfg.default_hooks.pop('visualization', None)  # not a default: no None
    # visualizers are shared by name (mmdet's is always 'visualizer'), and
    # one made for an earlier run writes to that run's deleted work dir
    cfg.experiment_name = osp.basename(work_dir)
    if cfg.get('visualizer'):
        cfg.visualizer.name = cfg.experiment_name
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # through ClassBalancedDataset etc.
        dataset = dataset.dataset
    dataset.data_root = data_root
    if amp:
        enable_amp(cfg, amp if isinstance(amp, str) else None)
    cfg.merge_from_dict(cfg_options or {})
    return cfg


def train_iterations(config: str, data_root: str, amp, iters: int,
                     warmup: int, cfg_options=None) -> Dict[str, object]:
    """Train ``iters`` iterations; iterations per second after ``warmup``,
    peak allocated GPU memory (MiB, None on a CPU) and the last loss."""
    from mmlt.utils.launch import build_runner
    with tempfile.TemporaryDirectory(prefix='mmlt_check_gpu_') as work_dir:
        cfg = short_run_config(config, work_dir, iters, data_root, amp,
                               cfg_options)
        runner = build_runner(cfg)
        timer = IterationTimer(warmup)
        runner.register_hook(timer, 'LOWEST')
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        runner.train()
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return dict(
        iters_per_s=timer.iterations_per_second(),
        peak_mib=peak,
        iters=len(timer.stamps),
        loss=timer.loss)


def build_small_toy_lvis(out_dir: str, fashion_mnist_root: str) -> str:
    from tools.dataset_converters.make_toy_lvis import build_toy_lvis
    build_toy_lvis(out_dir, fashion_mnist_root, **TOY_LVIS_KWARGS)
    return out_dir


def check_training(fashion_mnist_root: str, iters: int, warmup: int,
                   amp_modes=(False, True)) -> List[Dict[str, object]]:
    """A few iterations of the Fashion-MNIST-LT and toy LVIS ProCo configs
    with and without AMP; one record per run, with ``error`` and ``fix`` on
    failure."""
    records = []
    with tempfile.TemporaryDirectory(prefix='mmlt_toy_lvis_') as toy_root:
        runs = [('proco_fashionmnistlt', CLS_CONFIG, fashion_mnist_root)]
        try:
            build_small_toy_lvis(toy_root, fashion_mnist_root)
            runs.append(('toy LVIS ProCo', DET_CONFIG, toy_root))
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            records.append(
                dict(name='toy LVIS ProCo (building its data)',
                     error=f'{type(error).__name__}: {error}',
                     fix=failure_hint(str(error))))
        for name, config, root in runs:
            for amp in amp_modes:
                label = f'{name}{" --amp" if amp else ""}'
                try:
                    record = train_iterations(config, root, amp, iters,
                                              warmup)
                except Exception as error:  # noqa: BLE001
                    traceback.print_exc()
                    record = dict(
                        error=f'{type(error).__name__}: {error}',
                        fix=failure_hint(str(error)))
                records.append(dict(name=label, **record))
    return records


def format_training(record: Dict[str, object]) -> str:
    if 'error' in record:
        return f"{record['name']}: {record['error']}\n      fix: " \
               f"{record['fix']}"
    speed = record['iters_per_s']
    speed = f'{speed:.2f} it/s' if speed is not None else 'too few iters'
    peak = record['peak_mib']
    peak = f', peak allocated {peak:.0f} MiB' if peak is not None else ''
    return (f"{record['name']}: {record['iters']} iterations, {speed}{peak},"
            f" last loss {record['loss']:.4g}")


# ------------------------------------------------------------------ main --
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--fashion-mnist-root',
        default=FASHION_MNIST_ROOT,
        help='directory with the Fashion-MNIST IDX files (.gz), the data of '
        'both training checks (Debian: dataset-fashion-mnist)')
    parser.add_argument(
        '--iters', type=int, default=30, help='training iterations per run')
    parser.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='first iterations left out of the timing')
    parser.add_argument(
        '--train-on-cpu',
        action='store_true',
        help='without a GPU, run the training iterations on the CPU (slow; '
        'checks this tool itself)')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error('--iters must be >= 1 and --warmup >= 0')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    failed = False
    try:
        info = load_ops()
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        say('FAIL', f'mmcv ops do not load: {error}\n      fix: '
            f'{failure_hint(str(error))}')
        return 1
    kernels = ('CPU kernels only' if info['cuda'] == 'not available' else
               f"CPU and CUDA {info['cuda']} kernels")
    say('OK', f"mmcv {info['mmcv']} ops load: {kernels} ({info['compiler']});"
        f" torch {info['torch']} (CUDA {info['torch_cuda']})")

    problems = check_ops('cpu')
    failed |= bool(problems)
    say('FAIL' if problems else 'PASS',
        'CPU: nms, batched_nms, RoIAlign forward/backward against closed '
        'forms and torchvision' + ''.join(f'\n      {p}' for p in problems))

    gpu = torch.cuda.is_available()
    if not gpu:
        say('SKIP', 'GPU half skipped: torch sees no GPU '
            '(torch.cuda.is_available() is False); run this again on the '
            'GPU machine')
    else:
        name = torch.cuda.get_device_name()
        capability = '{}.{}'.format(*torch.cuda.get_device_capability())
        if info['cuda'] == 'not available':
            problems = ['this mmcv was compiled without CUDA kernels']
            fix = failure_hint('implementation for device cuda')
        else:
            try:
                problems = check_ops('cuda')
                fix = None
            except Exception as error:  # noqa: BLE001
                traceback.print_exc()
                problems = [f'{type(error).__name__}: {error}']
                fix = failure_hint(str(error))
        failed |= bool(problems)
        say('FAIL' if problems else 'PASS',
            f'GPU {name} (sm_{capability.replace(".", "")}): CUDA ops '
            'against their CPU results, float16 RoIAlign' +
            ''.join(f'\n      {p}' for p in problems) +
            (f'\n      fix: {fix}' if fix else ''))

    if gpu or args.train_on_cpu:
        if not osp.isfile(
                osp.join(args.fashion_mnist_root,
                         'train-images-idx3-ubyte.gz')):
            say('FAIL', f'no Fashion-MNIST IDX files in '
                f'{args.fashion_mnist_root}\n      fix: `apt-get install '
                'dataset-fashion-mnist` (Debian/Ubuntu), or pass '
                '--fashion-mnist-root DIR with train-images-idx3-ubyte.gz '
                'etc.')
            return 1
        device = 'GPU' if gpu else 'CPU'
        for record in check_training(args.fashion_mnist_root, args.iters,
                                     args.warmup):
            failed |= 'error' in record
            say('FAIL' if 'error' in record else 'OK',
                f'{device} training, {format_training(record)}')
    return int(failed)


if __name__ == '__main__':
    sys.exit(main())
