"""Per-category counts read straight from an LVIS json (the tests' reference)."""
import json


def lvis_class_counts(ann_file, mode='instance'):
    """Counts per category, in the file's ``categories`` order.

    ``'instance'`` counts annotations, ``'image'`` distinct images: an obvious
    loop over the raw json, independent of the dataset code under test.
    """
    if mode not in ('instance', 'image'):
        raise ValueError(f'mode={mode!r}')
    if isinstance(ann_file, dict):
        content = ann_file
    else:
        with open(ann_file) as f:
            content = json.load(f)
    counts = []
    for category in content['categories']:
        image_ids = [
            a['image_id'] for a in content['annotations']
            if a['category_id'] == category['id']
        ]
        counts.append(
            len(image_ids) if mode == 'instance' else len(set(image_ids)))
    return counts
