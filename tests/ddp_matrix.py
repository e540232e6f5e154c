"""The DDP config matrix: every shipped config, 2 gloo processes, one launch.

``tests/test_configs/test_ddp_matrix.py`` writes small data sets in each
dataset's real on-disk format (:func:`write_data`) and starts this file once
with ``torch.distributed.run --nproc_per_node 2``. Each process joins one gloo
group, then, for every config of :func:`cases`, does what
``tools/train.py CONFIG --launcher pytorch`` does (load the config, merge the
command line, build the Runner, train) on a copy of the config that only
points at the small data and shrinks sizes (:func:`adapt`). After training it
checks what DDP must keep identical and writes one JSON record per config
(rank 0):

* ``iters``: iterations trained;
* ``param_mismatch`` / ``buffer_mismatch``: parameters, and buffers outside
  BatchNorm layers (estimator sums, priors, queues, prototypes), that differ
  between the ranks bitwise (rank 0's are broadcast and compared on rank 1);
* ``priors``: every class prior the model holds (``log_prior`` buffers), as
  probabilities, next to ``stream``: the class counts of the indices that the
  training sampler actually drew on both ranks over several epochs, labels
  read from ``get_data_info`` (an independent count of what
  ``ClassCountsHook(prior='stream')`` predicts).

Adaptations (all of them are in :func:`adapt`): data roots, LT subset sizes,
batch size, image sizes (224 -> 32, LVIS scales -> 128), ``num_workers=0``,
no validation, 2 iterations per config (epoch-based loops stop after 2
batches, iteration-based after 2 iterations), PCL clusters every epoch (no
warm-up) with as many prototypes as the small data allows, LVIS v1 configs
with the toy set's 10 classes and no ImageNet-pretrained backbone download.
A config that starts from another config's checkpoint (``stage1_checkpoint``:
linear probes, decoupled classifiers) runs after it and starts from the
matrix's own run of it. A config with nothing to train (no ``train_cfg``:
tau-norm) runs the tau search on its validation split instead
(:func:`search_one`); its record holds the tau each rank chose.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import time
import traceback
from datetime import timedelta
from itertools import islice

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
CONFIG_DIR = osp.join(REPO, 'configs')
ITERS = 2
# Toy LVIS v1 classes, as in configs/lvis/toy.
TOY_CLASSES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
               'shirt', 'sneaker', 'bag', 'ankle_boot')
LIST_SPLITS = {'ImageNet_LT': 1000, 'Places_LT': 365, 'iNaturalist18': 8142}


# --------------------------------------------------------------- the configs
def shipped_configs():
    """Every config a user can train: ``configs/**/*.py`` minus ``_base_``."""
    paths = glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, CONFIG_DIR) for p in paths
        if '_base_' not in osp.relpath(p, CONFIG_DIR).split(os.sep))


#: Configs the matrix does not train, with the reason. Empty: every shipped
#: config runs (the LVIS v1 ones on the toy set, see :func:`adapt`).
EXCLUDED = {}


def extra_cases():
    """Variants that exercise a sampler of the LVIS v1 configs on the toy
    LVIS configs: (name, config, sampler override)."""
    return [
        # mmlt.RFSMatchedClassAwareSampler under AspectRatioBatchSampler,
        # prior='stream' (the class-aware LVIS v1 config's setup).
        ('lvis/toy/mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py'
         '#class-aware', 'lvis/toy/mask-rcnn_r18-tiny_fpn_proco_toy-lvis.py',
         'class-aware'),
    ]


def needs_stage1(name):
    """Whether a config starts from another config's checkpoint (a linear
    probe, a decoupled classifier): it sets ``stage1_checkpoint``."""
    with open(osp.join(CONFIG_DIR, name)) as f:
        return 'stage1_checkpoint' in f.read()


def cases():
    """``[(name, config path relative to configs/, variant)]``."""
    found = [(name, name, None) for name in shipped_configs()
             if name not in EXCLUDED]
    # Two-stage protocols in order: a linear probe or a decoupled classifier
    # starts from its stage-1 run, trained earlier in the matrix.
    found.sort(key=lambda case: needs_stage1(case[0]))
    return found + extra_cases()


def needs_no_training(name):
    """Whether a config is post hoc (no ``train_cfg``: tau-norm)."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(CONFIG_DIR, name)).get(
        'train_cfg') is None


def stage1_config(checkpoint):
    """The shipped config whose run writes ``checkpoint``
    (``work_dirs/<config stem>/epoch_N.pth``)."""
    stem = osp.basename(osp.dirname(checkpoint))
    found = [name for name in shipped_configs()
             if osp.splitext(osp.basename(name))[0] == stem]
    if len(found) != 1:
        raise ValueError(f'stage1_checkpoint {checkpoint}: {len(found)} '
                         f'shipped configs are named {stem}.py: {found}')
    return found[0]


def replace_value(obj, old, new):
    """Every string value ``old`` in a nested config replaced by ``new``."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list) else ()
    for key, value in items:
        if value == old:
            obj[key] = new
        elif isinstance(value, (dict, list)):
            replace_value(value, old, new)
    return obj


def slug_of(name):
    """The work dir name of a matrix case."""
    return name.replace('/', '__').replace('#', '--').replace('.py', '')


# ------------------------------------------------------------------ the data
def write_image(path, height, width, seed):
    import mmcv
    rng = np.random.RandomState(seed)
    mmcv.imwrite(rng.randint(0, 256, (height, width, 3)).astype(np.uint8),
                 path)


def write_data(root):
    """Small copies of every training set the configs read, in their real
    formats. Returns the roots by name."""
    sys.path.insert(0, HERE)
    from fake_data import write_fake_cifar, write_fake_fashion_mnist
    roots = dict(
        fashion=osp.join(root, 'fashion'),
        cifar10=osp.join(root, 'cifar10'),
        cifar100=osp.join(root, 'cifar100'),
        lists=osp.join(root, 'lists'),
        imagenet=osp.join(root, 'imagenet'),
        toy_lvis=osp.join(root, 'toy_lvis'))
    write_fake_fashion_mnist(roots['fashion'], per_class_train=40,
                             per_class_test=2)
    write_fake_cifar(roots['cifar10'], 10, per_class=16)
    write_fake_cifar(roots['cifar100'], 100, per_class=8)
    # ImageNet-LT / Places-LT / iNaturalist 2018 lists: every class needs an
    # image (ClassCountsHook refuses a class without one), so every line
    # points at one of 8 small JPEGs; long-tailed: classes 0-9 have 20
    # images, the others one (so that a file prior and a balanced stream's
    # differ measurably).
    os.makedirs(osp.join(roots['lists'], 'meta'))
    for i in range(8):
        write_image(osp.join(roots['lists'], 'train', f'img{i}.jpg'),
                    40 + 3 * i, 36, seed=i)
    for stem, num_classes in LIST_SPLITS.items():
        labels = list(range(num_classes)) + [c for c in range(10)] * 19
        lines = [f'train/img{i % 8}.jpg {c}' for i, c in enumerate(labels)]
        for split in ('train', 'val', 'test'):
            with open(osp.join(roots['lists'], 'meta', f'{stem}_{split}.txt'),
                      'w') as f:
                f.write('\n'.join(lines) + '\n')
    # ImageNet (PCL): meta/train.txt, paths relative to train/.
    os.makedirs(osp.join(roots['imagenet'], 'meta'))
    with open(osp.join(roots['imagenet'], 'meta', 'train.txt'), 'w') as f:
        for i in range(8):
            write_image(
                osp.join(roots['imagenet'], 'train', f'n{i:08d}.JPEG'), 40,
                44, seed=10 + i)
            f.write(f'n{i:08d}.JPEG {i}\n')
    # Toy LVIS v1 from Fashion-MNIST objects.
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_toy_lvis',
        osp.join(REPO, 'tools', 'dataset_converters', 'make_toy_lvis.py'))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.build_toy_lvis(
        roots['toy_lvis'], roots['fashion'], n_max=8, imb_factor=8,
        val_images_per_category=1, seed=1)
    return roots


# ------------------------------------------------------------ the adaptation
_SIZES = {224: 32, 256: 36}


def shrink_sizes(obj):
    """ImageNet-size crops (224, resize 256) to 32/36, recursively."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ('scale', 'crop_size', 'size') and isinstance(
                    value, int) and value in _SIZES:
                obj[key] = _SIZES[value]
            else:
                shrink_sizes(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            shrink_sizes(value)
    return obj


def detection_pipeline(pipeline):
    """LVIS multi-scale resizes to 128x128 (the toy set's image size)."""
    for transform in pipeline:
        if transform.get('type') == 'RandomChoiceResize':
            transform['scales'] = [(128, 128)]
        elif transform.get('type') == 'Resize':
            transform['scale'] = (128, 128)
    return pipeline


def classification_leaf(dataset, roots, labeled_n_max=None):
    """Point one classification dataset at the small data; LT subsets small
    enough for it (every class keeps at least one image)."""
    kind = dataset['type']
    # the validation split holds out what the training subset leaves
    train = dataset.get('split', 'train') in ('train', 'val') and \
        'ann_file' not in dataset
    if kind == 'mmlt.FashionMNISTLT':
        dataset['data_root'] = roots['fashion']
        if train:
            dataset.update(n_max=labeled_n_max or 24,
                           imb_factor=4 if labeled_n_max else 6)
    elif kind in ('mmlt.CIFAR10LT', 'mmlt.CIFAR100LT'):
        ten = kind == 'mmlt.CIFAR10LT'
        dataset['data_root'] = roots['cifar10' if ten else 'cifar100']
        if train:
            dataset.update(
                n_max=labeled_n_max or (8 if ten else 4), imb_factor=4)
    elif kind in ('mmlt.ImageNetLT', 'mmlt.PlacesLT',
                  'mmlt.INaturalist2018'):
        dataset['data_root'] = roots['lists']
    elif kind == 'ImageNet':
        dataset['data_root'] = roots['imagenet']
    else:
        raise ValueError(f'the DDP matrix has no small data for {kind}')
    if 'unlabeled' in dataset:  # the unlabeled split's own LT profile
        dataset['unlabeled'].update(n_max=4, imb_factor=2)
    if dataset.get('split') == 'val':  # held out of what the LT subset left
        dataset['n_val_per_class'] = 2
    return dataset


def classification_dataset(dataset, roots):
    if dataset['type'] == 'mmlt.SeededDataset':
        classification_dataset(dataset['dataset'], roots)
        return dataset
    if dataset['type'] == 'mmlt.SemiSupervisedDataset':
        # labeled 4..1 per class; the unlabeled split draws from the rest
        for split in ('labeled', 'unlabeled'):
            classification_leaf(dataset[split], roots, labeled_n_max=4)
        return dataset
    return classification_leaf(dataset, roots)


def toy_lvis_dataset(dataset, root):
    """An LVIS dataset (or its RFS wrapper) on the toy LVIS v1 set."""
    inner = dataset.get('dataset', dataset)
    inner['data_root'] = root
    inner['ann_file'] = 'annotations/lvis_v1_train.json'
    inner['data_prefix'] = dict(img='')
    inner['metainfo'] = dict(classes=TOY_CLASSES)
    detection_pipeline(inner['pipeline'])
    if 'oversample_thr' in dataset:
        # RFS threshold of the toy configs: repeats the toy set's rare images
        # (1e-3 of LVIS v1's 100k images repeats none of ~25).
        dataset['oversample_thr'] = 0.1
    return dataset


def use_matrix_stage1(cfg, roots):
    """A config that starts from a stage-1 checkpoint (``stage1_checkpoint``:
    a linear probe, a decoupled classifier) starts from the matrix's run of
    that stage-1 config instead."""
    if 'stage1_checkpoint' not in cfg:
        return
    ours = osp.join(roots['work'],
                    slug_of(stage1_config(cfg.stage1_checkpoint)),
                    'epoch_1.pth')
    replace_value(cfg.model, cfg.stage1_checkpoint, ours)
    cfg.stage1_checkpoint = ours


def adapt_post_hoc(cfg, roots):
    """A config with nothing to train (tau-norm), pointed at the small data:
    its validation split and its metric's training set."""
    loader = cfg.val_dataloader
    classification_leaf(loader.dataset, roots)
    shrink_sizes(loader.dataset)
    loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    if cfg.val_evaluator.get('train_dataset'):
        classification_leaf(cfg.val_evaluator.train_dataset, roots)
    use_matrix_stage1(cfg, roots)
    cfg.launcher = 'pytorch'
    cfg.log_level = 'WARNING'
    return cfg


def adapt(cfg, roots, variant=None):
    """The config, pointed at the small data and shrunk (module docstring).
    Nothing about the method (model, losses, samplers, hooks) changes."""
    loader = cfg.train_dataloader
    detection = cfg.get('default_scope') == 'mmdet'
    if detection:
        toy_lvis_dataset(loader.dataset, roots['toy_lvis'])
        loader.batch_size = 1
        model = cfg.model
        model.roi_head.bbox_head.num_classes = len(TOY_CLASSES)
        if 'num_classes' in model.roi_head.bbox_head.loss_cls:  # Seesaw
            model.roi_head.bbox_head.loss_cls.num_classes = len(TOY_CLASSES)
        if 'mask_head' in model.roi_head:
            model.roi_head.mask_head.num_classes = len(TOY_CLASSES)
        # No download: torchvision://resnet50 needs the internet.
        model.backbone.init_cfg = None
        if variant == 'class-aware':
            loader.sampler = dict(
                type='mmlt.RFSMatchedClassAwareSampler',
                num_sample_class=1,
                oversample_thr=0.1)
            loader.dataset = loader.dataset.dataset  # no RFS wrapper
    else:
        classification_dataset(loader.dataset, roots)
        backbone = cfg.model.get('backbone', {})
        if 'http' in str(backbone.get('init_cfg', '')):
            backbone['init_cfg'] = None  # no download here
        shrink_sizes(loader.dataset)
        views = 1
        seeded = loader.dataset.type == 'mmlt.SeededDataset'
        leaf = loader.dataset.dataset if seeded else loader.dataset
        for transform in leaf.get('pipeline', []) or []:
            if transform.get('type') == 'MultiView':
                views = transform['num_views']
        loader.batch_size = 6 if 'MultiSource' in str(loader.sampler) else \
            (2 if views != 1 else 4)
        if loader.sampler.get('batch_size') is not None:
            loader.sampler.batch_size = loader.batch_size
    use_matrix_stage1(cfg, roots)
    sampler = loader.sampler
    if 'epoch_length' in sampler:
        sampler.epoch_length = ITERS
    loader.num_workers = 0
    loader.persistent_workers = False
    # PCL: cluster every epoch, as many prototypes as the small data allows.
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'mmlt.PrototypeClusteringHook':
            hook['warmup_epochs'] = 0
            cluster_loader = hook['dataloader']
            classification_leaf(cluster_loader['dataset'], roots)
            shrink_sizes(cluster_loader['dataset'])
            cluster_loader.update(batch_size=4, num_workers=0,
                                  persistent_workers=False)
            hook.get('kmeans_cfg', {})['backend'] = 'torch'
    proto_loss = cfg.model.get('proto_loss')
    if proto_loss is not None:
        proto_loss['num_clusters'] = (2, 3, 4)
    if 'queue_len' in cfg.model:
        cfg.model.queue_len = 16
    if 'max_iters' in cfg.train_cfg:
        cfg.train_cfg.max_iters = ITERS
    else:
        cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.pop('val_interval', None)
    # The runtime's hooks as configured; the test hook stops epochs early.
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='StopEpochAfterIters', iters=ITERS)
    ]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    if 'visualization' in cfg.default_hooks:
        cfg.default_hooks.visualization = dict(
            type=cfg.default_hooks.visualization['type'])
    cfg.log_level = 'WARNING'
    return cfg


# ------------------------------------------------------------------- checks
#: Buffers that are per-process by design, with the reason.
RANK_LOCAL = {
    # MMDetection's SeesawLoss counts the samples of each class that its
    # own process saw (as the authors' code does on every GPU); the
    # mitigation factor uses those local counts.
    'loss_cls.cum_samples': 'MMDetection SeesawLoss: per-process counts',
}
RANK_LOCAL_BUFFERS = tuple(RANK_LOCAL)

def _unwrapped(model):
    return getattr(model, 'module', model)


def _bn_buffer_names(model):
    from torch.nn.modules.batchnorm import _BatchNorm
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            for name, _ in module.named_buffers(recurse=False):
                names.add(f'{prefix}.{name}' if prefix else name)
    return names


def rank_mismatches(named_tensors):
    """Names whose tensor on this rank differs bitwise from rank 0's."""
    import torch
    import torch.distributed as dist
    different = []
    for name, tensor in named_tensors:
        local = tensor.detach().cpu().contiguous()
        theirs = local.clone()
        dist.broadcast(theirs, src=0)
        if not torch.equal(local, theirs) and not (
                local.is_floating_point() and torch.equal(
                    torch.isnan(local), torch.isnan(theirs))
                and torch.equal(local.nan_to_num(0), theirs.nan_to_num(0))):
            different.append(name)
    gathered = [None, None]
    dist.all_gather_object(gathered, different)
    return sorted(set(gathered[0]) | set(gathered[1]))


def model_mismatches(runner):
    model = _unwrapped(runner.model)
    bn = _bn_buffer_names(model)
    params = rank_mismatches(model.named_parameters())
    buffers = rank_mismatches(
        (n, b) for n, b in model.named_buffers() if n not in bn)
    for hook in runner.hooks:  # EMAHook's averaged copy
        ema = getattr(hook, 'ema_model', None)
        if ema is not None:
            ema = _unwrapped(ema)
            ema_bn = _bn_buffer_names(ema)
            params += ['ema.' + n for n in rank_mismatches(
                ema.named_parameters())]
            buffers += ['ema.' + n for n in rank_mismatches(
                (n, b) for n, b in ema.named_buffers() if n not in ema_bn)]
    return params, buffers


def priors(runner):
    """Every class prior the model holds, as probabilities."""
    import torch
    found = {}
    for name, buffer in _unwrapped(runner.model).named_buffers():
        if not name.endswith('log_prior') or buffer.numel() == 0 or \
                not torch.isfinite(buffer).all():
            continue
        log_prior = buffer.double()
        model_cfg = runner.cfg.model
        head = model_cfg.get('head') or model_cfg.roi_head.bbox_head
        if log_prior.numel() == head.num_classes + 1:
            log_prior = log_prior[:-1]  # DetLogitAdjustLoss: + background
        found[name] = torch.softmax(log_prior, 0).tolist()
    return found


def sample_labels(dataset, idx):
    """Labels of drawn index ``idx`` from its data info: ``gt_label``, or
    the instances' ``bbox_label`` (not ignored); none for unlabeled data."""
    info = dataset.get_data_info(idx)
    if 'instances' in info:
        return [inst['bbox_label'] for inst in info['instances']
                if not inst.get('ignore_flag', 0)]
    label = info.get('gt_label')
    if label is None:
        return []
    return np.atleast_1d(np.asarray(label)).astype(int).tolist()


def drawn_stream(runner, min_draws=4000):
    """Class counts of the indices the training sampler draws on this rank
    and the other, over whole epochs (``set_epoch``) until each rank has at
    least ``min_draws`` indices; infinite samplers in one pass."""
    import torch.distributed as dist
    loader = runner.train_dataloader
    loader = getattr(loader, 'loader', loader)
    sampler = loader.batch_sampler.sampler
    dataset = loader.dataset
    from mmengine.dataset import InfiniteSampler
    drawn, epoch = [], 0
    if isinstance(sampler, InfiniteSampler):  # one endless stream
        drawn = list(islice(iter(sampler), min_draws))
    while len(drawn) < min_draws:
        sampler.set_epoch(epoch)
        one_epoch = list(iter(sampler))
        assert one_epoch, f'{type(sampler).__name__} drew nothing'
        drawn.extend(one_epoch)
        epoch += 1
    labels_of = {}
    counts = {}
    for idx in drawn:
        if idx not in labels_of:
            labels_of[idx] = sample_labels(dataset, idx)
        for label in labels_of[idx]:
            counts[label] = counts.get(label, 0) + 1
    gathered = [None, None]
    dist.all_gather_object(gathered, counts)
    total = {}
    for part in gathered:
        for label, count in part.items():
            total[label] = total.get(label, 0) + count
    return dict(counts=total, epochs=epoch, sampler=type(sampler).__name__,
                clump=getattr(sampler, 'num_samples_cls', 1))


# ------------------------------------------------------------------ the run
def search_one(name, config, roots, work_root):
    """A post-hoc config: ``tools/analysis_tools/tau_norm_search.py CONFIG
    STAGE1 --launcher pytorch`` on the adapted config (each rank scores its
    part of the validation split); the record holds the tau each rank
    chose and rank 0's scores."""
    import torch.distributed as dist
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    from tau_norm_search import DEFAULT_TAUS, search, search_config

    from mmlt.utils.launch import build_runner, load_config
    cfg = adapt_post_hoc(load_config(osp.join(CONFIG_DIR, config)),
                         dict(roots, work=work_root))
    cfg.work_dir = osp.join(work_root, slug_of(name))
    cfg.experiment_name = slug_of(name)
    start = time.monotonic()
    runner = build_runner(search_config(cfg, config))
    tau, scores = search(runner, cfg.stage1_checkpoint, DEFAULT_TAUS,
                         'lt/top1')
    taus = [None, None]
    dist.all_gather_object(taus, tau)
    record = dict(name=name, post_hoc=True, taus=taus, scores=scores,
                  seconds=dict(search=round(time.monotonic() - start, 2)))
    del runner
    dist.barrier()
    return record


def train_one(name, config, variant, roots, work_root):
    """``tools/train.py CONFIG --launcher pytorch`` on the adapted config;
    returns the record of the checks."""
    import torch
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from train import merge_args, parse_args

    from mmlt.utils.launch import build_runner, load_config

    slug = slug_of(name)
    work_dir = osp.join(work_root, slug)
    args = parse_args([
        osp.join(CONFIG_DIR, config), '--launcher', 'pytorch', '--work-dir',
        work_dir, '--no-validate'
    ])
    cfg = adapt(load_config(args.config, args.cfg_options),
                dict(roots, work=work_root), variant)
    cfg = merge_args(cfg, args)
    cfg.experiment_name = slug
    start = time.monotonic()
    runner = build_runner(cfg)
    built = time.monotonic()
    runner.train()
    trained = time.monotonic()
    params, buffers = model_mismatches(runner)
    buffers = [name for name in buffers
               if not name.endswith(RANK_LOCAL_BUFFERS)]
    record = dict(
        name=name,
        iters=runner.iter,
        # the last iteration's total loss (rank 0's), as logged
        loss=float(runner.message_hub.get_scalar('train/loss').current()),
        param_mismatch=params,
        buffer_mismatch=buffers,
        num_params=sum(1 for _ in _unwrapped(runner.model).parameters()),
        priors=priors(runner),
        stream=drawn_stream(runner),
        prior_mode=[h.get('prior', 'file') for h in cfg.custom_hooks
                    if h['type'] == 'mmlt.ClassCountsHook'],
        seconds=dict(
            build=round(built - start, 2),
            train=round(trained - built, 2),
            checks=round(time.monotonic() - trained, 2)))
    del runner
    torch.distributed.barrier()
    return record


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--roots', required=True, help='JSON of data roots')
    parser.add_argument('--out', required=True)
    parser.add_argument('--only', nargs='*', help='names to run')
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    # MMEngine formats the whole config with yapf when a Runner starts and
    # at every checkpoint (seconds a config here); the text is not checked.
    import mmengine.config.config as mmengine_config
    mmengine_config.FormatCode = lambda text, **kwargs: (text, False)
    import mmlt  # noqa: F401
    import mmlt_test_hooks  # noqa: F401  (StopEpochAfterIters)
    # One process group for the whole matrix: the Runners find it
    # initialised and keep it (MMEngine's setup_env).
    dist.init_process_group('gloo', timeout=timedelta(seconds=180))
    rank = dist.get_rank()
    with open(args.roots) as f:
        roots = json.load(f)
    todo = [case for case in cases()
            if not args.only or case[0] in args.only]
    os.makedirs(args.out, exist_ok=True)
    for name, config, variant in todo:
        work = osp.join(args.out, 'work')
        try:
            if needs_no_training(config):
                record = search_one(name, config, roots, work)
            else:
                record = train_one(name, config, variant, roots, work)
        except Exception:  # reported per config; the matrix goes on
            record = dict(name=name, error=traceback.format_exc()[-6000:])
        errors = [None, None]
        dist.all_gather_object(errors, record.get('error'))
        record['errors'] = errors
        if rank == 0:
            with open(osp.join(args.out, 'records.jsonl'), 'a') as f:
                f.write(json.dumps(record) + '\n')
        print(f'[ddp-matrix] rank {rank} {name}: '
              f'{"FAILED" if any(errors) else "ok"} '
              f'{record.get("seconds", "")}', flush=True)
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
