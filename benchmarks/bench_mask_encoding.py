"""Benchmark pasting and RLE-encoding instance masks: MMDetection's way
(every mask pasted into the whole image, then ``encode_mask_results``)
against mmlt's windows (``paste_and_encode_masks``), on the same detections,
checking that the RLEs are equal.

Run from the repository root::

    python benchmarks/bench_mask_encoding.py                  # CPU, 1 thread
    python benchmarks/bench_mask_encoding.py --device cuda

The detections: one 640 x 480 image (LVIS's largest side is 640), ``--num``
masks of 28 x 28 logits drawn from N(0, 4^2) for 80 classes, boxes with
log-normal sides (median ``--median-side`` pixels, log-sd 0.8, at most 600),
placed uniformly. MMDetection's whole-image paste runs in chunks of 100 (its
GPU path; on a CPU its head pastes one mask at a time in a 1-pixel margin,
``--mmdet-cpu`` times that too). Times are the minimum of ``--repeats``
interleaved runs; the figure is microseconds per mask and the ratio.
"""
import argparse
import time

import torch


def detections(num, median_side, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    height, width = 480, 640
    sides = torch.exp(
        torch.randn(num, 2, generator=generator) * 0.8 +
        torch.log(torch.tensor(float(median_side)))).clamp(max=600)
    corner = torch.rand(num, 2, generator=generator) * (
        torch.tensor([width, height]) - sides).clamp(min=0)
    boxes = torch.cat([corner, corner + sides], 1)
    logits = torch.randn(num, 80, 28, 28, generator=generator) * 4
    labels = torch.randint(80, (num, ), generator=generator)
    meta = dict(scale_factor=(1.0, 1.0), ori_shape=(height, width))
    return boxes.to(device), logits.to(device), labels.to(device), meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--num', type=int, default=1000)
    parser.add_argument('--median-side', type=float, default=45.0)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--mmdet-cpu', action='store_true',
                        help="also time FCNMaskHead.predict_by_feat's "
                        'one-mask-at-a-time CPU path')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
        _do_paste_mask
    from mmdet.structures.mask import encode_mask_results
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData

    from mmlt.integrations.mmdet.mask_rle import paste_and_encode_masks
    boxes, logits, labels, meta = detections(args.num, args.median_side,
                                             args.device)
    height, width = meta['ori_shape']
    cuda = args.device.startswith('cuda')

    def whole_image():
        probs = logits.sigmoid()[torch.arange(len(labels)), labels][:, None]
        rles = []
        for start in range(0, len(boxes), 100):
            pasted, _ = _do_paste_mask(probs[start:start + 100],
                                       boxes[start:start + 100], height,
                                       width, skip_empty=False)
            rles += encode_mask_results((pasted >= 0.5).cpu().numpy())
        return rles

    def mmdet_cpu():
        head = FCNMaskHead(num_classes=80)
        result = head.predict_by_feat(
            (logits.cpu(), ),
            [InstanceData(bboxes=boxes.cpu().clone(), labels=labels.cpu())],
            [meta], ConfigDict(mask_thr_binary=0.5), rescale=True)[0]
        return encode_mask_results(result.masks.numpy())

    def windows():
        return paste_and_encode_masks(logits, boxes, labels, meta, 0.5,
                                      True)[1]

    methods = dict(whole_image=whole_image, windows=windows)
    if args.mmdet_cpu:
        methods['mmdet_cpu'] = mmdet_cpu
    results = {name: fn() for name, fn in methods.items()}  # warm-up
    for name, rles in results.items():
        if rles != results['whole_image']:
            raise SystemExit(f'{name} gives different RLEs')
    times = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).mean()
    print(f'{args.num} masks on {width} x {height} ({args.device}, '
          f'{args.threads} thread(s)), mean box area {float(area):.0f} px; '
          'RLEs equal')
    best = {name: min(values) for name, values in times.items()}
    for name, seconds in best.items():
        print(f'{name:12s} {seconds / args.num * 1e6:8.1f} us per mask   '
              f'{best["whole_image"] / seconds:6.1f}x whole_image')


if __name__ == '__main__':
    main()
