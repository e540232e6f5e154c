"""docs/expected_results.md has a row for every ImageNet-LT, iNaturalist
2018, Places-LT, CIFAR-10/100-LT and LVIS config, and names only configs
that exist."""
import fnmatch
import itertools
import os.path as osp
import re

from ddp_matrix import shipped_configs

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(REPO, 'docs', 'expected_results.md')
DATASETS = ('imagenetlt', 'inat2018', 'placeslt', 'cifar10lt', 'cifar100lt',
            'lvis')


def expand_braces(pattern):
    """``a{b,c}d`` -> ``['abd', 'acd']`` (every brace group)."""
    parts = re.split(r'\{([^}]*)\}', pattern)
    choices = [[part] if i % 2 == 0 else part.split(',')
               for i, part in enumerate(parts)]
    return [''.join(p) for p in itertools.product(*choices)]


def first_column_patterns():
    """The config patterns in the first column of the page's tables."""
    patterns = []
    with open(PAGE) as f:
        for line in f:
            cells = line.split('|')
            if len(cells) < 3:
                continue
            for name in re.findall(r'`([^`]+)`', cells[1]):
                patterns += expand_braces(name)
    return patterns


def test_every_config_of_those_datasets_has_a_row():
    patterns = first_column_patterns()
    configs = [name for name in shipped_configs()
               if any(key in name for key in DATASETS)]
    assert len(configs) > 40
    missing = [name for name in configs
               if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert missing == []


def test_every_row_names_existing_configs():
    configs = shipped_configs()
    for pattern in first_column_patterns():
        assert any(fnmatch.fnmatch(name, pattern) for name in configs), \
            pattern
