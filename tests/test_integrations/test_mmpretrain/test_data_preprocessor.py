import pytest
import torch

pytest.importorskip('mmpretrain')
from mmpretrain.structures import DataSample  # noqa: E402

from mmlt.integrations.mmpretrain import MultiViewDataPreprocessor  # noqa


def make(**kwargs):
    return MultiViewDataPreprocessor(
        mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 5.0], **kwargs)


def test_views_are_normalised_and_stacked_view_major():
    pre = make()
    views = [[torch.randint(0, 255, (3, 6, 6), dtype=torch.uint8)
              for _ in range(4)] for _ in range(3)]
    data = dict(
        inputs=views,
        data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    out = pre(data, training=True)
    assert out['inputs'].shape == (12, 3, 6, 6)
    mean = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)
    std = torch.tensor([2.0, 4.0, 5.0]).view(3, 1, 1)
    for v in range(3):
        for b in range(4):
            expected = (views[v][b].float() - mean) / std
            torch.testing.assert_close(out['inputs'][v * 4 + b], expected)
    assert [ds.gt_label.item() for ds in out['data_samples']] == [0, 1, 2, 3]


def test_single_view_passes_through():
    pre = make()
    imgs = [torch.randint(0, 255, (3, 5, 5), dtype=torch.uint8)
            for _ in range(2)]
    out = pre(dict(inputs=imgs, data_samples=None))
    assert out['inputs'].shape == (2, 3, 5, 5)


def test_views_of_different_sizes_are_refused():
    pre = make()
    views = [[torch.zeros(3, 6, 6, dtype=torch.uint8)] * 2,
             [torch.zeros(3, 4, 4, dtype=torch.uint8)] * 2]
    with pytest.raises(ValueError, match='same shape'):
        pre(dict(inputs=views, data_samples=None))


def test_batch_augments_with_views_are_refused():
    pre = make(num_classes=3, batch_augments=dict(
        augments=dict(type='Mixup', alpha=1.0)))
    views = [[torch.zeros(3, 4, 4, dtype=torch.uint8)] * 2] * 2
    samples = [DataSample().set_gt_label(0), DataSample().set_gt_label(1)]
    with pytest.raises(ValueError, match='mixup'):
        pre(dict(inputs=views, data_samples=samples), training=True)


@pytest.mark.parametrize('num_views', [1, 3])
def test_channels_last_keeps_values(num_views):
    torch.manual_seed(0)
    views = [[torch.randint(0, 255, (3, 6, 7), dtype=torch.uint8)
              for _ in range(2)] for _ in range(num_views)]
    inputs = views if num_views > 1 else views[0]
    plain = make()(dict(inputs=inputs, data_samples=None), training=True)
    fast = make(channels_last=True)(
        dict(inputs=inputs, data_samples=None), training=True)
    assert fast['inputs'].is_contiguous(memory_format=torch.channels_last)
    assert not plain['inputs'].is_contiguous(
        memory_format=torch.channels_last)
    assert torch.equal(fast['inputs'], plain['inputs'])
    # a convolution gives the same result in either format
    conv = torch.nn.Conv2d(3, 4, 3)
    torch.testing.assert_close(
        conv(fast['inputs']), conv(plain['inputs']), rtol=1e-5, atol=1e-5)


def test_copies_to_the_device_without_blocking(monkeypatch):
    """non_blocking=True reaches MMEngine's cast_data (pinned batches
    overlap the step on a GPU); on the CPU the values are the same."""
    from mmlt.integrations.mmpretrain.data_preprocessor import \
        MultiViewDataPreprocessor
    calls = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get('non_blocking'))
        return original(self, *args, **kwargs)

    preprocessor = MultiViewDataPreprocessor(mean=[0.], std=[1.])
    assert MultiViewDataPreprocessor(
        mean=[0.], std=[1.], non_blocking=False)._non_blocking is False
    monkeypatch.setattr(torch.Tensor, 'to', spy)
    out = preprocessor(dict(inputs=[torch.ones(1, 4, 4, dtype=torch.uint8)],
                            data_samples=None), training=True)
    assert True in calls and False not in calls
    assert torch.equal(out['inputs'], torch.ones(1, 1, 4, 4))
