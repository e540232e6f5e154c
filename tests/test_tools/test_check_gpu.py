"""tools/check_gpu.py: its comparisons, hints and closed forms, the CPU half
on this machine (GPU half skipped, exit code 0), the short-run configs, and
(slow) the training half run on the CPU."""
import math
import os.path as osp

import pytest
import torch

pytest.importorskip('mmcv.ops')

from tools import check_gpu  # noqa: E402

FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def iou(a, b):
    """IoU of two xyxy boxes (plain floats)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def greedy_nms(boxes, scores, labels, thr):
    """Slow greedy NMS: highest score first, drop same-label boxes with IoU
    above ``thr`` with a kept one."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(labels[i] != labels[j] or iou(boxes[i], boxes[j]) <= thr
               for j in kept):
            kept.append(i)
    return kept


def test_run_ops_nms_matches_a_slow_greedy_loop():
    inputs = check_gpu.make_op_inputs(seed=3)
    results = check_gpu.run_ops(inputs)
    boxes = inputs['boxes'].tolist()
    scores = inputs['scores'].tolist()
    assert results['nms.keep'].tolist() == greedy_nms(
        boxes, scores, [0] * len(scores), check_gpu.IOU_THR)
    assert results['batched_nms.keep'].tolist() == greedy_nms(
        boxes, scores, inputs['labels'].tolist(), check_gpu.IOU_THR)
    # kept boxes and their scores, in the kept order
    keep = results['nms.keep']
    torch.testing.assert_close(
        results['nms.dets'],
        torch.cat([inputs['boxes'][keep], inputs['scores'][keep, None]], 1))
    # the RoIAlign gradient of an output gradient g puts sum(g) in the
    # input (every sample point of these RoIs lies inside the feature map)
    torch.testing.assert_close(
        results['roi_align.grad'].sum(),
        inputs['roi_grad'].sum(),
        atol=1e-3,
        rtol=1e-4)


def test_compare_results_reports_each_kind_of_difference():
    ref = {
        'nms.keep': torch.tensor([0, 2, 3]),
        'roi_align.output': torch.zeros(2, 3),
    }
    assert check_gpu.compare_results(ref, dict(ref)) == []
    # within tolerance: equal
    close = dict(ref, **{'roi_align.output': torch.full((2, 3), 5e-5)})
    assert check_gpu.compare_results(ref, close) == []

    far = dict(ref, **{'roi_align.output': torch.full((2, 3), 0.25)})
    (problem, ) = check_gpu.compare_results(ref, far)
    assert problem.startswith('roi_align.output: max |difference| 0.25')
    other_keep = dict(ref, **{'nms.keep': torch.tensor([0, 3, 2])})
    assert check_gpu.compare_results(ref, other_keep) == [
        'nms.keep: differs first at [1]'
    ]
    fewer = dict(ref, **{'nms.keep': torch.tensor([0, 2])})
    assert check_gpu.compare_results(ref, fewer) == [
        'nms.keep: shape (2,), expected (3,)'
    ]
    assert check_gpu.compare_results(ref, {'nms.keep': ref['nms.keep']}) == [
        'roi_align.output: missing'
    ]


@pytest.mark.parametrize('error, expected', [
    ('nms_impl: implementation for device cuda:0 not found.', 'MMLT_CUDA=1'),
    ('CUDA error: no kernel image is available for execution on the device',
     'TORCH_CUDA_ARCH_LIST='),
    ('_ext.so: undefined symbol: _ZN3c10', 'keyed by the torch version'),
    ('CUDA out of memory. Tried to allocate 2.00 GiB', 'batch_size'),
    ('Found no NVIDIA driver on your system', 'update the driver'),
    ('something else', 'not a known set-up failure'),
])
def test_failure_hint_names_the_fix(error, expected):
    assert expected in check_gpu.failure_hint(error)


def test_closed_forms_hold_on_the_cpu_and_catch_a_wrong_op(monkeypatch):
    assert check_gpu.closed_form_problems('cpu') == []
    import mmcv.ops
    right = mmcv.ops.roi_align

    def unaligned(*args):  # the legacy half-pixel offset
        return right(*args[:-1], False)

    monkeypatch.setattr(mmcv.ops, 'roi_align', unaligned)
    problems = check_gpu.closed_form_problems('cpu')
    assert len(problems) == 1
    # aligned=False samples half a pixel later: f moves by 0.5 * (2 + 3)
    error = float(problems[0].rsplit(' ', 1)[1])
    assert error == pytest.approx(2.5, abs=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason='tests the CPU half')
def test_cpu_half_passes_and_says_the_gpu_half_was_skipped(capsys):
    assert check_gpu.main([]) == 0
    out = capsys.readouterr().out
    assert '[check_gpu] OK    mmcv 2.1.0 ops load' in out
    assert '[check_gpu] PASS  CPU: nms, batched_nms, RoIAlign' in out
    assert '[check_gpu] SKIP  GPU half skipped' in out
    assert 'training' not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason='tests the CPU half')
def test_missing_training_data_fails_with_the_fix(tmp_path, capsys):
    code = check_gpu.main(
        ['--train-on-cpu', '--fashion-mnist-root',
         str(tmp_path)])
    assert code == 1
    assert 'apt-get install dataset-fashion-mnist' in capsys.readouterr().out


@pytest.mark.parametrize(
    'config, nested', [(check_gpu.CLS_CONFIG, 0), (check_gpu.DET_CONFIG, 1)],
    ids=['fashionmnistlt', 'toy-lvis'])
def test_short_run_config(tmp_path, config, nested):
    pytest.importorskip('mmdet')
    cfg = check_gpu.short_run_config(config, str(tmp_path), 7, '/some/root',
                                     amp=True)
    assert cfg.train_cfg == dict(
        type='IterBasedTrainLoop', max_iters=7, val_interval=8)
    assert cfg.val_dataloader is None and cfg.test_evaluator is None
    assert cfg.default_hooks.checkpoint is None
    assert cfg.optim_wrapper.type == 'mmlt.AmpOptimWrapper'
    dataset = cfg.train_dataloader.dataset
    for _ in range(nested):  # ClassBalancedDataset around the LVIS set
        dataset = dataset.dataset
    assert dataset.data_root == '/some/root'
    plain = check_gpu.short_run_config(config, str(tmp_path), 7, '/r',
                                       amp=False)
    assert plain.optim_wrapper.type == 'mmlt.SkipNonFiniteOptimWrapper'


@pytest.mark.slow
@pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST), reason='Fashion-MNIST IDX files missing')
def test_training_half_runs_on_the_cpu():
    pytest.importorskip('mmdet')
    records = check_gpu.check_training(
        FASHION_MNIST, iters=2, warmup=0, amp_modes=(False, True))
    assert [r['name'] for r in records] == [
        'proco_fashionmnistlt', 'proco_fashionmnistlt --amp',
        'toy LVIS ProCo', 'toy LVIS ProCo --amp'
    ]
    for record in records:
        assert 'error' not in record, record
        assert record['iters'] == 2
        assert record['iters_per_s'] > 0
        assert math.isfinite(record['loss'])
        assert record['peak_mib'] is None  # no GPU memory on a CPU
        assert check_gpu.format_training(record).startswith(
            f"{record['name']}: 2 iterations, ")
