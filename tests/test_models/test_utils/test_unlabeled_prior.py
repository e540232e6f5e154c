"""mmlt.models.utils.unlabeled_prior: the running estimates of the unlabeled
class distribution, worked out by hand, the EM fixed point by Monte Carlo,
ACR's tau against a direct evaluation of its formula, and no host reads."""
import math

import pytest
import torch

from mmlt.models.utils.unlabeled_prior import (UnlabeledPrior,
                                               reversed_by_rank, symmetric_kl)
from op_recorder import OpRecorder


def test_ema_steps_by_hand():
    prior = UnlabeledPrior(3, momentum=0.5)
    prior.update(torch.tensor([2., 1, 1]), torch.tensor([1., 0, 0]))
    third = 1 / 3
    torch.testing.assert_close(
        prior.mean_prediction,
        torch.tensor([0.5 * third + 0.25, 0.5 * third + 0.125,
                      0.5 * third + 0.125], dtype=torch.float64))
    torch.testing.assert_close(
        prior.histogram,
        torch.tensor([0.5 * third + 0.5, 0.5 * third, 0.5 * third],
                     dtype=torch.float64))
    # Empty sums (no unlabeled sample, nothing kept) change nothing.
    before = prior.state_dict()
    prior.update(torch.zeros(3), torch.zeros(3))
    for key, value in before.items():
        torch.testing.assert_close(prior.state_dict()[key], value)
    # the floor keeps log finite for a class never predicted
    prior = UnlabeledPrior(2, momentum=0.0, floor=1e-4)
    prior.update(torch.tensor([0., 3.]), torch.tensor([0., 1.]))
    estimate = prior.estimate('histogram')
    assert estimate[0] == pytest.approx(1e-4 / (1 + 1e-4))
    assert torch.isfinite(estimate.log()).all()


def test_reversed_and_symmetric_kl_by_hand():
    prior = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    assert reversed_by_rank(prior).tolist() == [0.5, 0.2, 0.3]
    p = torch.tensor([0.25, 0.75], dtype=torch.float64)
    q = torch.tensor([0.5, 0.5], dtype=torch.float64)
    expected = (0.25 * math.log(0.5) + 0.75 * math.log(1.5)
                + 0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert float(symmetric_kl(p, q)) == pytest.approx(expected)


def test_mean_prediction_converges_to_the_unlabeled_prior_by_em():
    """Balanced logits (log-likelihoods of 1-D Gaussians), samples drawn
    with a reversed prior: iterating ``estimated`` mode's posterior mean is
    EM for the prior and finds it."""
    generator = torch.Generator().manual_seed(0)
    pi_u = torch.tensor([0.05, 0.15, 0.3, 0.5], dtype=torch.float64)
    means = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    labels = torch.multinomial(pi_u, 20000, replacement=True,
                               generator=generator)
    x = means[labels] + torch.randn(20000, generator=generator,
                                    dtype=torch.float64)
    logits = -0.5 * (x[:, None] - means[None]) ** 2  # log p(x | y) + const
    log_labeled_prior = pi_u.flip(0).log()  # the labeled split: reversed
    prior = UnlabeledPrior(4, mode='estimated', momentum=0.0)
    for _ in range(300):
        # an LA-trained (balanced) classifier: labeled_tau = 1
        adjustment = prior.adjustment(log_labeled_prior, labeled_tau=1.0)
        posterior = (logits + adjustment).softmax(dim=1)
        prior.update(posterior.sum(0), torch.zeros(4))
    empirical = torch.bincount(labels, minlength=4).double() / 20000
    assert 0.5 * (prior.estimate() - empirical).abs().sum() < 0.02


def test_adjustment_of_each_mode():
    log_pl = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64).log()
    prior = UnlabeledPrior(3)
    assert prior.adjustment(log_pl, 1.0) is None
    prior = UnlabeledPrior(3, mode='estimated', momentum=0.0)
    prior.update(torch.tensor([1., 1, 2]), torch.zeros(3))
    estimate = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    # plain CE head (labeled_tau 0): log pi_u - log pi_l; LA head: log pi_u
    torch.testing.assert_close(prior.adjustment(log_pl, 0.0),
                               estimate.log() - log_pl)
    torch.testing.assert_close(prior.adjustment(log_pl, 1.0), estimate.log())
    prior = UnlabeledPrior(3, mode='adaptive')
    prior.adaptive_tau.fill_(1.5)
    torch.testing.assert_close(prior.adjustment(log_pl, 1.0), -0.5 * log_pl)


def _acr_tau(estimate, labeled, tau_max=2.0):
    """ACR's formula evaluated directly, in Python floats."""
    def sym_kl(p, q):
        return sum((a - b) * (math.log(a) - math.log(b))
                   for a, b in zip(p, q))
    order = sorted(range(len(labeled)), key=lambda c: -labeled[c])
    reverse = [0.0] * len(labeled)
    for rank, c in enumerate(order):
        reverse[c] = labeled[order[len(order) - 1 - rank]]
    uniform = [1 / len(labeled)] * len(labeled)
    distances = [sym_kl(estimate, a) for a in (labeled, uniform, reverse)]
    return tau_max * math.exp(distances[0]) / sum(map(math.exp, distances))


@pytest.mark.parametrize('profile', ['consistent', 'uniform', 'reversed'])
def test_adaptive_tau_against_the_formula(profile):
    counts = [1000 * 0.01**(c / 9) for c in range(10)]  # IF 100
    labeled = [n / sum(counts) for n in counts]
    estimate = dict(consistent=labeled, uniform=[0.1] * 10,
                    reversed=labeled[::-1])[profile]
    prior = UnlabeledPrior(10, mode='adaptive', momentum=0.0, floor=1e-12)
    prior.update(torch.tensor(estimate, dtype=torch.float64), torch.zeros(10))
    prior.end_of_epoch(torch.tensor(labeled, dtype=torch.float64))
    expected = _acr_tau(estimate, labeled)
    assert float(prior.adaptive_tau) == pytest.approx(expected, rel=1e-9)
    # 0 for a consistent split, about 1 uniform, about 2 reversed
    target = dict(consistent=0.0, uniform=1.0, reversed=2.0)[profile]
    assert abs(expected - target) < 0.25


def test_adaptive_tau_warmup_and_its_checkpoint():
    labeled = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    prior = UnlabeledPrior(3, mode='adaptive', momentum=0.0, warmup_epochs=3)
    prior.update(labeled.flip(0), torch.zeros(3))  # looks reversed
    taus = []
    for _ in range(5):
        prior.end_of_epoch(labeled)
        taus.append(float(prior.adaptive_tau))
    expected = _acr_tau(labeled.flip(0).tolist(), labeled.tolist())
    # the estimates of epochs 1-3 (the warm-up) leave it at its start; set
    # when epoch 4, the first after the warm-up, ends
    assert taus[:3] == [1.0, 1.0, 1.0]
    assert taus[3:] == [pytest.approx(expected)] * 2
    # a checkpoint from before the epoch count loads with 0 epochs done
    state = prior.state_dict()
    del state['epochs_done']
    fresh = UnlabeledPrior(3, mode='adaptive', warmup_epochs=3)
    fresh.load_state_dict(state)
    assert int(fresh.epochs_done) == 0
    assert float(fresh.adaptive_tau) == pytest.approx(expected)


@pytest.mark.parametrize('kwargs, message', [
    (dict(mode='adaptive', warmup_epochs=-1), r'warmup_epochs must be an int >= 0'),
    (dict(mode='adaptive', warmup_epochs=1.5), r'warmup_epochs must be an int >= 0'),
    (dict(mode='estimated', warmup_epochs=2), "needs mode='adaptive'"),
])
def test_bad_warmup_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnlabeledPrior(3, **kwargs)


def test_distances_by_hand():
    prior = UnlabeledPrior(2, momentum=0.0)
    prior.update(torch.tensor([3., 1.]), torch.tensor([1., 1.]))
    out = prior.distances(torch.tensor([1., 1.]))
    assert out['pi_u_tv_mean_prediction'] == pytest.approx(0.25)
    assert out['pi_u_tv_histogram'] == pytest.approx(0.0)
    assert out['pi_u_kl_mean_prediction'] == pytest.approx(
        0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))


def test_no_host_read_and_meta_device():
    prior = UnlabeledPrior(5, mode='adaptive')
    recorder = OpRecorder()
    with recorder:
        prior.update(torch.rand(5), torch.rand(5))
        prior.end_of_epoch(torch.full((5, ), 0.2, dtype=torch.float64))
        prior.adjustment(torch.zeros(5, dtype=torch.float64), 1.0)
    assert not recorder.host_syncs, recorder.sync_frames
    meta = UnlabeledPrior(5, mode='estimated').to('meta')
    meta.update(torch.empty(5, device='meta'), torch.empty(5, device='meta'))
    assert meta.adjustment(torch.empty(5, device='meta'), 1.0).shape == (5, )


def test_bad_arguments():
    with pytest.raises(ValueError, match='mode'):
        UnlabeledPrior(3, mode='debias')
    with pytest.raises(ValueError, match='momentum must be below 1'):
        UnlabeledPrior(3, momentum=1.0)
    with pytest.raises(ValueError, match='source'):
        UnlabeledPrior(3, source='labels')


def test_adaptive_tau_map_against_a_direct_computation():
    """For each adjustment: the mean adjusted posterior, and the tau of
    ACR's formula written out (anchors, symmetric KL, softmax) here."""
    from mmlt.models.utils.unlabeled_prior import adaptive_tau_map
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=generator, dtype=torch.float64)
    prior = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=torch.float64)
    rows = adaptive_tau_map(logits, prior.log(), 1.0, [0.0, 0.5, 2.0])
    for tau, estimate, next_tau in rows:
        expected = (logits + (1.0 - tau) * prior.log()).softmax(1).mean(0)
        torch.testing.assert_close(estimate, expected)
        distances = []
        for anchor in (prior, torch.full((4, ), 0.25, dtype=torch.float64),
                       torch.tensor([0.05, 0.1, 0.25, 0.6],
                                    dtype=torch.float64)):
            distances.append(sum(
                (e - a) * math.log(e / a)
                for e, a in zip(expected.tolist(), anchor.tolist())))
        weights = [math.exp(d) for d in distances]
        assert next_tau == pytest.approx(2 * weights[0] / sum(weights))
    assert [row[0] for row in rows] == [0.0, 0.5, 2.0]


def test_where_the_tau_map_crosses_the_identity():
    from tools.analysis_tools.acr_tau_map import crossing
    rows = [(0.0, None, 0.3), (0.5, None, 0.45), (1.0, None, 0.7)]
    # 0.3 - 0 > 0 and 0.45 - 0.5 < 0: crosses at 0.3 / (0.3 + 0.05) * 0.5
    assert crossing(rows) == pytest.approx(0.5 * 0.3 / 0.35)
    assert crossing([(0.0, None, 0.0), (1.0, None, 0.2)]) == 0.0
    assert crossing([(0.0, None, 1.5), (2.0, None, 1.9)]) == pytest.approx(
        1.875)  # 1.5 above, 0.1 below: 2 * 1.5 / 1.6
    assert crossing([(0.0, None, 0.5), (1.0, None, 1.5)]) is None
