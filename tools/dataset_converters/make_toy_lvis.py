"""Build a toy LVIS v1 dataset from Fashion-MNIST objects pasted on canvases.

The result has the layout and json format of LVIS v1 (Gupta et al., CVPR
2019), so MMDetection's ``LVISV1Dataset``, ``LVISMetric`` and the official
LVIS evaluation run on it unchanged::

    OUT_DIR/
      train2017/000000000001.jpg ...
      val2017/000001000001.jpg ...
      annotations/lvis_v1_train.json
      annotations/lvis_v1_val.json

Each Fashion-MNIST class is a category. The number of *training images* that
contain category ``i`` follows the exponential long-tail profile
``n_i = int(n_max * IF ** (-i / 9))`` (``mmlt.datasets.make_lt_counts``), so
with the defaults (``n_max=300``, ``IF=100``: 300, 179, 107, 64, 38, 23, 13, 8,
4, 3 images) there are 3 frequent (> 100 images), 4 common (11-100) and 3 rare
(<= 10) categories, and each category's ``frequency`` field says which. Every
(image, category) pair holds one or two instances; the objects are Fashion-
MNIST digits scaled 1-1.75x, pasted without overlap on a dark, noisy canvas;
masks are the polygons of the object's pixels and boxes their extent. The
validation images use the Fashion-MNIST test split (no object is shared) and
contain every category the same number of times.

As in LVIS, every image lists ``neg_category_ids`` (categories verified
absent: a random part of the absent ones) and ``not_exhaustive_category_ids``
(present categories whose instances are not all annotated: one annotation of
such a pair is left out of the json).

Example::

    python tools/dataset_converters/make_toy_lvis.py data/toy_lvis
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'
#: Category names (LVIS style: lower case, underscores) in label order.
CATEGORY_NAMES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
                  'shirt', 'sneaker', 'bag', 'ankle_boot')
RARE_MAX_IMAGES, COMMON_MAX_IMAGES = 10, 100
PIXEL_THRESHOLD = 40  # object pixels: Fashion-MNIST value above this
URL_PREFIX = 'http://images.cocodataset.org/'


def load_fashion_mnist(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` of one split.

    Args:
        root (str): Directory with the IDX files (gzip'd or not).
        split (str): ``'train'`` or ``'t10k'``.
    """
    from mmlt.datasets.fashion_mnist_lt import _find_idx_file, read_idx_file
    images = read_idx_file(_find_idx_file(root, f'{split}-images-idx3-ubyte'))
    labels = read_idx_file(_find_idx_file(root, f'{split}-labels-idx1-ubyte'))
    return images, labels.astype(np.int64)


def assign_categories(image_counts: Sequence[int], num_images: int,
                      rng: np.random.Generator) -> List[List[int]]:
    """Give category ``c`` to ``image_counts[c]`` distinct images.

    Categories are placed largest first, each on the images that hold the
    fewest categories so far (ties broken at random), which spreads them
    evenly.

    Returns:
        list[list[int]]: The categories (labels) of each image.
    """
    if max(image_counts) > num_images:
        raise ValueError(f'a category needs {max(image_counts)} images but '
                         f'there are only {num_images}')
    categories: List[List[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images, dtype=np.int64)
    for label in np.argsort(-np.asarray(image_counts), kind='stable'):
        order = np.lexsort((rng.random(num_images), load))
        for image in order[:image_counts[label]]:
            categories[image].append(int(label))
            load[image] += 1
    return categories


def object_mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a binary mask as LVIS polygons ``[x1, y1, ...]``."""
    import cv2
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue  # a point or a line has no area
        # Pixel (x, y) covers [x, x+1) x [y, y+1); +0.5 puts the polygon
        # through the pixel centres.
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        polygons.append([round(float(v), 2) for v in points.flatten()])
    return polygons


def _place(size: int, existing: List[Tuple[int, int, int, int]], height: int,
           width: int, rng: np.random.Generator,
           tries: int = 50) -> Optional[Tuple[int, int]]:
    """Top-left corner for a ``height x width`` box that overlaps none."""
    for _ in range(tries):
        x = int(rng.integers(0, size - width + 1))
        y = int(rng.integers(0, size - height + 1))
        if all(x + width <= ex or ex + ew <= x or y + height <= ey
               or ey + eh <= y for ex, ey, ew, eh in existing):
            return x, y
    return None


def render_image(objects: Sequence[Tuple[int, np.ndarray]], size: int,
                 rng: np.random.Generator,
                 scale_range: Tuple[float, float] = (1.0, 1.75)):
    """Paste ``(label, 28x28 glyph)`` objects on a ``size x size`` canvas.

    Returns:
        tuple: the BGR image ``(size, size, 3)`` uint8 and a list of
        ``(label, polygons)`` for the objects that fit.
    """
    import cv2
    canvas = rng.integers(0, 30, size=(size, size), dtype=np.uint8)
    placed_boxes: List[Tuple[int, int, int, int]] = []
    annotations = []
    for label, glyph in objects:
        scale = rng.uniform(*scale_range)
        for _ in range(4):  # shrink until the object fits
            side = max(12, int(round(28 * scale)))
            corner = _place(size, placed_boxes, side, side, rng)
            if corner is not None:
                break
            scale *= 0.8
        if corner is None:
            continue
        x, y = corner
        resized = cv2.resize(glyph, (side, side),
                             interpolation=cv2.INTER_LINEAR)
        mask = resized > PIXEL_THRESHOLD
        polygons = object_mask_polygons(mask)
        if not polygons:
            continue
        region = canvas[y:y + side, x:x + side]
        np.maximum(region, resized, out=region)
        placed_boxes.append((x, y, side, side))
        annotations.append(
            (label, [[v + (x if i % 2 == 0 else y) for i, v in enumerate(p)]
                     for p in polygons]))
    image = np.repeat(canvas[:, :, None], 3, axis=2)
    return image, annotations


def _polygon_box_and_area(polygons, height, width):
    from pycocotools import mask as mask_utils
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    box = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
    return box, float(mask_utils.area(rle))


def make_split(split: str, categories_per_image: List[List[int]],
               glyphs: np.ndarray, glyph_labels: np.ndarray, out_dir: str,
               first_image_id: int, rng: np.random.Generator, image_size: int,
               neg_fraction: float, not_exhaustive_prob: float,
               max_instances: int) -> Tuple[list, list]:
    """Render one split's images and return its ``images`` and
    ``annotations`` json lists."""
    import cv2
    folder = f'{split}2017'
    os.makedirs(osp.join(out_dir, folder), exist_ok=True)
    num_categories = len(CATEGORY_NAMES)
    # Each object is a different Fashion-MNIST image of its class.
    pools = {
        label: list(rng.permutation(np.flatnonzero(glyph_labels == label)))
        for label in range(num_categories)
    }
    images, annotations = [], []
    for offset, labels in enumerate(categories_per_image):
        image_id = first_image_id + offset
        objects = []
        for label in labels:
            for _ in range(int(rng.integers(1, max_instances + 1))):
                if not pools[label]:
                    raise ValueError(f'ran out of Fashion-MNIST images of '
                                     f'class {label} for split {split}')
                objects.append((label, glyphs[pools[label].pop()]))
        image, placed = render_image(objects, image_size, rng)
        present = sorted({label for label, _ in placed})
        absent = [c for c in range(num_categories) if c not in present]
        negatives = [c for c in absent if rng.random() < neg_fraction]
        not_exhaustive = [
            c for c in present if rng.random() < not_exhaustive_prob
        ]
        dropped = set()
        for label in not_exhaustive:
            # Leave one instance of the pair unannotated, if it has two.
            indices = [i for i, (lab, _) in enumerate(placed) if lab == label]
            if len(indices) > 1:
                dropped.add(indices[-1])
        file_name = f'{image_id:012d}.jpg'
        cv2.imwrite(
            osp.join(out_dir, folder, file_name), image,
            [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                coco_url=f'{URL_PREFIX}{folder}/{file_name}',
                height=image_size,
                width=image_size,
                license=1,
                flickr_url='',
                date_captured='2024-01-01 00:00:00',
                neg_category_ids=[c + 1 for c in negatives],
                not_exhaustive_category_ids=[c + 1 for c in not_exhaustive]))
        for index, (label, polygons) in enumerate(placed):
            if index in dropped:
                continue
            box, area = _polygon_box_and_area(polygons, image_size,
                                              image_size)
            annotations.append(
                dict(
                    image_id=image_id,
                    category_id=label + 1,
                    bbox=box,
                    area=area,
                    segmentation=polygons))
    return images, annotations


def category_entries(image_counts: Sequence[int],
                     instance_counts: Sequence[int]) -> List[dict]:
    """LVIS ``categories`` with training counts and frequency groups."""
    entries = []
    for label, name in enumerate(CATEGORY_NAMES):
        count = int(image_counts[label])
        frequency = ('r' if count <= RARE_MAX_IMAGES else
                     'c' if count <= COMMON_MAX_IMAGES else 'f')
        entries.append({
            'id': label + 1,
            'name': name,
            'synset': f'fashion_mnist.{name}.n.01',
            'synonyms': [name],
            'def': f'Fashion-MNIST class {label} ({name})',
            'frequency': frequency,
            'image_count': count,
            'instance_count': int(instance_counts[label]),
        })
    return entries


def build_toy_lvis(out_dir: str,
                   fashion_mnist_root: str = FASHION_MNIST_ROOT,
                   n_max: int = 300,
                   imb_factor: float = 100.0,
                   val_images_per_category: int = 8,
                   categories_per_image: float = 2.0,
                   max_instances: int = 2,
                   image_size: int = 128,
                   neg_fraction: float = 0.5,
                   not_exhaustive_prob: float = 0.1,
                   seed: int = 0) -> Dict[str, object]:
    """Write the toy LVIS v1 dataset to ``out_dir``.

    Args:
        out_dir (str): Output directory.
        fashion_mnist_root (str): Directory with the Fashion-MNIST IDX files.
        n_max (int): Training images of the most frequent category.
        imb_factor (float): ``n_max`` over the rarest category's images.
        val_images_per_category (int): Validation images of every category.
        categories_per_image (float): Mean categories per image (sets the
            number of images).
        max_instances (int): Instances per (image, category), drawn from
            ``1..max_instances``.
        image_size (int): Square canvas side in pixels.
        neg_fraction (float): Share of an image's absent categories listed in
            ``neg_category_ids``.
        not_exhaustive_prob (float): Probability that a present category is
            marked not exhaustively annotated.
        seed (int): Seed of every random choice.

    Returns:
        dict: A summary: images and annotations per split, the categories'
        training image counts and frequency groups.
    """
    from mmlt.datasets.lt_base import make_lt_counts
    if not image_size >= 64:
        raise ValueError(f'image_size={image_size}; expected >= 64 so that '
                         'several 28-49 px objects fit')
    if not categories_per_image >= 1:
        raise ValueError(
            f'categories_per_image={categories_per_image}; expected >= 1')
    num_categories = len(CATEGORY_NAMES)
    rng = np.random.default_rng(seed)

    splits = {}
    train_counts = make_lt_counts(n_max, num_categories, imb_factor)
    num_train = max(n_max,
                    math.ceil(sum(train_counts) / categories_per_image))
    splits['train'] = assign_categories(train_counts, num_train, rng)
    val_counts = [val_images_per_category] * num_categories
    num_val = max(
        val_images_per_category,
        math.ceil(sum(val_counts) / categories_per_image))
    splits['val'] = assign_categories(val_counts, num_val, rng)

    sources = {'train': 'train', 'val': 't10k'}
    first_ids = {'train': 1, 'val': 1_000_001}
    content = {}
    for split, assignment in splits.items():
        glyphs, glyph_labels = load_fashion_mnist(fashion_mnist_root,
                                                  sources[split])
        assignment = [labels for labels in assignment if labels]
        images, annotations = make_split(
            split, assignment, glyphs, glyph_labels, out_dir,
            first_ids[split], rng, image_size, neg_fraction,
            not_exhaustive_prob, max_instances)
        for index, annotation in enumerate(annotations):
            annotation['id'] = index + 1
        content[split] = (images, annotations)

    # Category statistics of the training split, as in LVIS's own files.
    train_images, train_annotations = content['train']
    instance_counts = np.zeros(num_categories, dtype=np.int64)
    image_sets = [set() for _ in range(num_categories)]
    for annotation in train_annotations:
        instance_counts[annotation['category_id'] - 1] += 1
        image_sets[annotation['category_id'] - 1].add(annotation['image_id'])
    image_counts = [len(s) for s in image_sets]
    categories = category_entries(image_counts, instance_counts)

    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    summary = dict(categories=[
        (c['name'], c['image_count'], c['instance_count'], c['frequency'])
        for c in categories
    ])
    for split, (images, annotations) in content.items():
        dataset = dict(
            info=dict(
                description='toy LVIS v1 from Fashion-MNIST (mmlt)',
                version='1.0',
                year=2024),
            licenses=[dict(id=1, name='MIT (Fashion-MNIST)', url='')],
            images=images,
            annotations=annotations,
            categories=categories)
        path = osp.join(out_dir, 'annotations', f'lvis_v1_{split}.json')
        with open(path, 'w') as f:
            json.dump(dataset, f)
        summary[split] = dict(
            images=len(images), annotations=len(annotations), path=path)
    return summary


#: Stream of the large validation set's generator (the seed's second key).
LARGE_VAL_STREAM = 1
LARGE_VAL_FILE = 'lvis_v1_val-large.json'


def add_large_val(out_dir: str,
                  fashion_mnist_root: str = FASHION_MNIST_ROOT,
                  num_images: int = 400,
                  seed: int = 0,
                  categories_per_image: float = 2.0,
                  **render_options) -> Dict[str, object]:
    """Add a larger validation set to a toy LVIS built by
    :func:`build_toy_lvis`: ``annotations/lvis_v1_val-large.json``.

    Generated like the default validation set (every category in the same
    number of images, Fashion-MNIST test-split objects, the same rendering
    and federated fields), from its own generator,
    ``default_rng([seed, LARGE_VAL_STREAM])``, so the training set and the
    default validation set are untouched and the same ``seed`` gives the
    same images. Images are ``val2017/000002000001.jpg`` onwards; the
    categories (with their training counts) are copied from the training
    json.

    Args:
        out_dir (str): The toy LVIS directory (with its training json).
        num_images (int): Validation images, at least 10. Defaults to 400.
        seed (int): Seed of the generator. Defaults to 0.
        categories_per_image (float): As :func:`build_toy_lvis`.
        **render_options: ``max_instances``, ``image_size``,
            ``neg_fraction``, ``not_exhaustive_prob`` of
            :func:`build_toy_lvis` (its defaults when left out).

    Returns:
        dict: ``images``, ``annotations`` and ``path`` of the new json.
    """
    train_json = osp.join(out_dir, 'annotations', 'lvis_v1_train.json')
    if not osp.isfile(train_json):
        raise FileNotFoundError(
            f'{train_json} is missing: build the toy LVIS first '
            '(build_toy_lvis, or this script without --large-val-only)')
    if not num_images >= 10:
        raise ValueError(f'num_images={num_images}; expected >= 10')
    with open(train_json) as f:
        categories = json.load(f)['categories']
    rng = np.random.default_rng([seed, LARGE_VAL_STREAM])
    per_category = math.ceil(num_images * categories_per_image /
                             len(categories))
    assignment = assign_categories([min(per_category, num_images)] *
                                   len(categories), num_images, rng)
    glyphs, glyph_labels = load_fashion_mnist(fashion_mnist_root, 't10k')
    options = dict(max_instances=2, image_size=128, neg_fraction=0.5,
                   not_exhaustive_prob=0.1)
    unknown = set(render_options) - set(options)
    if unknown:
        raise TypeError(f'add_large_val got unknown options {sorted(unknown)}')
    options.update(render_options)
    images, annotations = make_split(
        'val', [labels for labels in assignment if labels], glyphs,
        glyph_labels, out_dir, 2_000_001, rng, options['image_size'],
        options['neg_fraction'], options['not_exhaustive_prob'],
        options['max_instances'])
    for index, annotation in enumerate(annotations):
        annotation['id'] = index + 1
    path = osp.join(out_dir, 'annotations', LARGE_VAL_FILE)
    with open(path, 'w') as f:
        json.dump(
            dict(info=dict(description='toy LVIS v1 from Fashion-MNIST, '
                           f'large validation set ({num_images} images)',
                           version='1.0', year=2024),
                 licenses=[dict(id=1, name='MIT (Fashion-MNIST)', url='')],
                 images=images, annotations=annotations,
                 categories=categories), f)
    return dict(images=len(images), annotations=len(annotations), path=path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Build a toy LVIS v1 dataset from Fashion-MNIST')
    parser.add_argument('out_dir', help='output directory')
    parser.add_argument(
        '--fashion-mnist-root',
        default=FASHION_MNIST_ROOT,
        help='directory of the Fashion-MNIST IDX files')
    parser.add_argument('--n-max', type=int, default=300)
    parser.add_argument('--imb-factor', type=float, default=100.0)
    parser.add_argument('--val-images-per-category', type=int, default=8)
    parser.add_argument('--categories-per-image', type=float, default=2.0)
    parser.add_argument('--max-instances', type=int, default=2)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--neg-fraction', type=float, default=0.5)
    parser.add_argument('--not-exhaustive-prob', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--large-val-images', type=int, default=0,
        help='also write annotations/lvis_v1_val-large.json with this many '
        'validation images (e.g. 400), from its own seeded generator')
    parser.add_argument(
        '--large-val-only', action='store_true',
        help='only add the large validation set to an existing toy LVIS')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.large_val_only and not args.large_val_images:
        raise SystemExit('--large-val-only needs --large-val-images N')
    common = dict(
        fashion_mnist_root=args.fashion_mnist_root,
        categories_per_image=args.categories_per_image,
        max_instances=args.max_instances,
        image_size=args.image_size,
        neg_fraction=args.neg_fraction,
        not_exhaustive_prob=args.not_exhaustive_prob,
        seed=args.seed)
    summary = None
    if not args.large_val_only:
        summary = build_toy_lvis(
            args.out_dir,
            n_max=args.n_max,
            imb_factor=args.imb_factor,
            val_images_per_category=args.val_images_per_category,
            **common)
        _print_summary(summary)
    if args.large_val_images:
        large = add_large_val(
            args.out_dir, num_images=args.large_val_images, **common)
        print(f'val-large: {large["images"]} images, '
              f'{large["annotations"]} annotations -> {large["path"]}')
        summary = large if summary is None else dict(summary,
                                                     val_large=large)
    return summary


def _print_summary(summary: Dict[str, object]) -> None:
    """The splits' sizes and the categories' training counts."""
    for split in ('train', 'val'):
        info = summary[split]
        print(f'{split}: {info["images"]} images, {info["annotations"]} '
              f'annotations -> {info["path"]}')
    print('category  train images  train instances  frequency')
    for name, images, instances, frequency in summary['categories']:
        print(f'{name:<10}{images:>13}{instances:>17}  {frequency}')


if __name__ == '__main__':
    main()
