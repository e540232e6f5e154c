"""Instance masks pasted into their boxes and RLE-encoded, without image-size
arrays.

MMDetection's ``FCNMaskHead`` pastes every ``M x M`` mask into a full
``H x W`` image (on a GPU, ``_do_paste_mask`` with ``skip_empty=False``) and
``encode_mask_results`` run-length encodes the whole image: both cost
``O(H W)`` per detection, which at AP-fixed's tens of thousands of detections
per image dominates the validation pass (docs/detection.md). A pasted mask is
zero outside its box widened by half a mask cell, so here each detection is
sampled only in that window (the same ``grid_sample`` coordinates, so the same
bits) and its COCO RLE is built from the window: ``O(box area)``.
"""
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from torch import Tensor


def mask_windows(boxes: Tensor, mask_size: int, img_h: int,
                 img_w: int) -> Tensor:
    """Pixel windows ``(x_start, y_start, x_end, y_end)`` ``(N, 4)`` (int64,
    clipped to the image) outside which the pasted masks are exactly zero.

    ``grid_sample`` (bilinear, zero padding, ``align_corners=False``) gives a
    non-zero value only at normalised coordinates within one half cell,
    ``1 / M``, of ``[-1, 1]``, i.e. within ``|box| / (2 M)`` pixels of the
    box; one more pixel on each side absorbs rounding. A box with zero width
    (or height) makes MMDetection sample the mask's centre across the whole
    image (its ``inf`` coordinates become 0), so its window is the full axis.
    """
    lo = torch.minimum(boxes[:, :2], boxes[:, 2:])
    hi = torch.maximum(boxes[:, :2], boxes[:, 2:])
    half_cell = (hi - lo) / (2 * mask_size)
    limit = boxes.new_tensor([img_w, img_h])
    start = (lo - half_cell).floor().sub_(1)
    end = (hi + half_cell).ceil().add_(1)
    degenerate = hi == lo
    start = torch.minimum(torch.where(degenerate, 0, start).clamp(min=0),
                          limit)
    end = torch.minimum(torch.where(degenerate, limit, end), limit)
    end = torch.maximum(end, start)
    return torch.cat([start, end], dim=1).long()


def paste_masks_in_windows(masks: Tensor, boxes: Tensor, windows: Tensor,
                           threshold: float) -> Tensor:
    """Binary masks pasted into their windows, ``(N, h, w)`` with ``h`` and
    ``w`` the tallest and widest window's (padding is False).

    Pixel ``(x, y)`` of the image is sampled exactly as MMDetection's
    ``_do_paste_mask`` samples it (same float32 operations), so every bit
    inside a window equals the full-image paste's.

    Args:
        masks (Tensor): Probabilities ``(N, M, M)``.
        boxes (Tensor): ``(N, 4)`` boxes ``x0, y0, x1, y1`` in pixels.
        windows (Tensor): :func:`mask_windows` ``(N, 4)``.
        threshold (float): A pixel is in the mask if its value is
            ``>= threshold`` (``mask_thr_binary``).
    """
    num = len(masks)
    size = windows[:, 2:] - windows[:, :2]
    width = int(size[:, 0].max()) if num else 0
    height = int(size[:, 1].max()) if num else 0
    column = torch.arange(width, device=masks.device)
    row = torch.arange(height, device=masks.device)
    img_x = (windows[:, :1] + column).to(torch.float32) + 0.5
    img_y = (windows[:, 1:2] + row).to(torch.float32) + 0.5
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = img_x.masked_fill(torch.isinf(img_x), 0)
    img_y = img_y.masked_fill(torch.isinf(img_y), 0)
    grid = torch.stack([
        img_x[:, None, :].expand(num, height, width),
        img_y[:, :, None].expand(num, height, width)
    ], dim=3)
    pasted = F.grid_sample(
        masks[:, None].to(torch.float32), grid, align_corners=False)
    # Padding may lie inside a box that leaves the image: cleared.
    inside = (row[None, :, None] < size[:, 1, None, None]) & (
        column[None, None, :] < size[:, 0, None, None])
    return (pasted[:, 0] >= threshold) & inside


def window_rle_counts(pasted: np.ndarray, windows: np.ndarray, img_h: int,
                      img_w: int) -> List[np.ndarray]:
    """Uncompressed COCO RLE counts of ``img_h x img_w`` masks that are zero
    outside their windows.

    COCO runs go down the columns (Fortran order) and start with zeros. Each
    window column is framed by one zero above and one below, standing for the
    image's zeros around it, so the changes of value in the framed columns,
    read one after the other, are the changes in the image (padding is zero
    and adds none). All masks are scanned together.

    Args:
        pasted (np.ndarray): :func:`paste_masks_in_windows` ``(N, h, w)``
            bool.
        windows (np.ndarray): ``(N, 4)`` int64 windows.
        img_h (int): Image height.
        img_w (int): Image width.

    Returns:
        list[np.ndarray]: One uint32 counts array per mask.
    """
    num, height, width = pasted.shape
    framed = np.zeros((num, width, height + 2), dtype=np.int8)
    framed[:, :, 1:-1] = pasted.transpose(0, 2, 1)
    flat = framed.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # first of a new run
    column, row = np.divmod(change, height + 2)
    mask, column = np.divmod(column, width)
    starts = ((windows[mask, 0] + column) * img_h + windows[mask, 1] - 1 +
              row)
    # A window as tall as the image frames its columns with zeros that
    # stand for no pixels: a run continuing into the next column shows as
    # two changes at one pixel, which cancel. A run reaching the last pixel
    # shows a change at the end.
    same = np.flatnonzero((starts[1:] == starts[:-1])
                          & (mask[1:] == mask[:-1]))
    keep = starts < img_h * img_w
    keep[same] = keep[same + 1] = False
    starts, mask = starts[keep], mask[keep]
    # Mask i's counts: its starts' differences (from 0), then the rest of
    # the image; laid out one mask after the other, then split.
    previous = np.zeros_like(starts)
    previous[1:] = starts[:-1]
    first = np.ones(len(starts), dtype=bool)
    first[1:] = mask[1:] != mask[:-1]
    previous[first] = 0
    bounds = np.searchsorted(mask, np.arange(num + 1))
    last = np.full(num, img_h * img_w, dtype=starts.dtype)
    has_runs = bounds[1:] > bounds[:-1]
    last[has_runs] -= starts[bounds[1:][has_runs] - 1]
    counts = np.empty(len(starts) + num, dtype=np.uint32)
    counts[np.arange(len(starts)) + mask] = starts - previous
    counts[bounds[1:] + np.arange(num)] = last
    return np.split(counts, (bounds[1:] + np.arange(1, num + 1))[:-1])


def encode_window_masks(pasted: Tensor, windows: Tensor, img_h: int,
                        img_w: int) -> List[dict]:
    """COCO RLEs (``{'size': [h, w], 'counts': bytes}``, as MMDetection's
    ``encode_mask_results`` writes them) of :func:`paste_masks_in_windows`'s
    masks."""
    if not len(pasted):
        return []
    counts = window_rle_counts(pasted.cpu().numpy(),
                               windows.cpu().numpy(), img_h, img_w)
    size = [img_h, img_w]
    return mask_util.frPyObjects([dict(counts=c, size=size) for c in counts],
                                 img_h, img_w)


def paste_and_encode_masks(mask_preds: Tensor, bboxes: Tensor, labels: Tensor,
                           img_meta: dict, threshold: float, rescale: bool,
                           class_agnostic: bool = False,
                           pixels_per_batch: int = 2**26
                           ) -> Tuple[Tensor, List[dict]]:
    """``FCNMaskHead.predict_by_feat`` for one image followed by
    ``encode_mask_results``, with the same RLEs, in ``O(box area)``.

    Args:
        mask_preds (Tensor): Mask logits ``(N, C, M, M)`` (or ``(N, 1, M,
            M)`` for a class-agnostic head).
        bboxes (Tensor): ``(N, 4)`` boxes in the network input's pixels.
        labels (Tensor): ``(N,)`` classes.
        img_meta (dict): With ``scale_factor`` and ``ori_shape``.
        threshold (float): ``mask_thr_binary``, > 0 (a pixel outside every
            window has value 0, in the mask only for a threshold <= 0).
        rescale (bool): Boxes and masks in the original image (as the head's
            ``rescale``).
        class_agnostic (bool): The head's ``class_agnostic``.
        pixels_per_batch (int): Window pixels pasted at once (memory);
            windows are batched by size. Defaults to 2**26.

    Returns:
        tuple[Tensor, list[dict]]: The boxes (rescaled as MMDetection
        rescales them) and one RLE per detection, in input order.
    """
    if not threshold > 0:
        raise ValueError(
            f'mask_thr_binary must be > 0 to paste masks in windows, got '
            f'{threshold} (at 0 every pixel of the image is in the mask); use '
            'FCNMaskHead.predict_by_feat and encode_mask_results')
    scale_factor = bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
    img_h, img_w = img_meta['ori_shape'][:2]
    bboxes = bboxes.clone()
    if rescale:
        bboxes /= scale_factor
    else:
        w_scale, h_scale = scale_factor[0, 0], scale_factor[0, 1]
        img_h = int(np.round(img_h * h_scale.item()))
        img_w = int(np.round(img_w * w_scale.item()))
    num = len(mask_preds)
    # the class's mask only (MMDetection takes the sigmoid of all C first)
    probs = mask_preds[:, 0] if class_agnostic else mask_preds[torch.arange(
        num, device=mask_preds.device), labels]
    probs = probs.sigmoid()
    windows = mask_windows(bboxes, probs.shape[-1], img_h, img_w)
    # Similar windows together: a batch is padded to its widest and tallest
    # window, so windows are grouped by their size rounded to powers of two
    # (at most 4 times the pixels), up to pixels_per_batch.
    sizes = (windows[:, 2:] - windows[:, :2]).cpu()
    bucket = torch.log2(sizes.clamp(min=1).double()).ceil().long()
    order = torch.argsort(bucket[:, 0] * 64 + bucket[:, 1]).tolist()
    bucket, sizes = bucket.tolist(), sizes.tolist()
    rles: List[dict] = [None] * num
    start = 0
    while start < num:
        end, width, height = start, 1, 1
        while end < num and (end == start or bucket[order[end]]
                             == bucket[order[start]]):
            new_width = max(width, sizes[order[end]][0])
            new_height = max(height, sizes[order[end]][1])
            if end > start and (end + 1 - start) * new_width * new_height \
                    > pixels_per_batch:
                break
            end, width, height = end + 1, new_width, new_height
        index = torch.tensor(order[start:end], device=bboxes.device)
        pasted = paste_masks_in_windows(probs[index], bboxes[index],
                                        windows[index], threshold)
        for i, rle in zip(order[start:end],
                          encode_window_masks(pasted, windows[index], img_h,
                                              img_w)):
            rles[i] = rle
        start = end
    return bboxes, rles


__all__ = [
    'mask_windows', 'paste_masks_in_windows', 'window_rle_counts',
    'encode_window_masks', 'paste_and_encode_masks'
]
