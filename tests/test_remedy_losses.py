"""Loss and weighting remedies: each test checks a defining property from the paper."""
import math

import pytest
import torch
import torch.nn.functional as F

from hgimb.data.task import Task
from hgimb.errors import HgimbError
from hgimb.imbalance import RemedyContext, build_remedy
from hgimb.imbalance.losses import focal_loss, ldam_margins
from hgimb.imbalance.weights import class_weights


def make_ctx(counts, epochs=10, names=None):
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return RemedyContext(num_classes=len(counts), train_index=torch.arange(labels.numel()), train_labels=labels,
                         epochs=epochs, class_names=names or [f"c{i}" for i in range(len(counts))])


def built(spec, counts, params=None, epochs=10):
    remedy = build_remedy(spec, params)
    ctx = make_ctx(counts, epochs=epochs)
    remedy.setup(ctx)
    return remedy, ctx


def batch(n=64, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(c, (n,), generator=g)


COUNTS3 = [90, 9, 1]


# ------------------------------------------------------------------ weights
def test_weighted_schemes_by_hand():
    counts = torch.tensor(COUNTS3)
    raw = torch.tensor([100 / (3 * 90), 100 / (3 * 9), 100 / 3])  # sklearn 'balanced'
    assert torch.allclose(class_weights(counts, "inverse"), raw * 3 / raw.sum())
    raw = torch.tensor([90 ** -0.5, 9 ** -0.5, 1.0])
    assert torch.allclose(class_weights(counts, "sqrt-inverse"), raw * 3 / raw.sum())
    beta = 0.9
    raw = torch.tensor([(1 - beta) / (1 - beta ** n) for n in COUNTS3])
    assert torch.allclose(class_weights(counts, "effective-number", beta), raw * 3 / raw.sum())
    for scheme in ("inverse", "sqrt-inverse", "effective-number"):
        w = class_weights(counts, scheme)
        assert w.mean().item() == pytest.approx(1.0) and bool((w[:-1] < w[1:]).all())


def test_weighted_sets_ctx_weights_and_default_loss_uses_them():
    remedy, ctx = built("weighted", COUNTS3, {"scheme": "sqrt-inverse"})
    assert torch.allclose(ctx.class_weight, class_weights(torch.tensor(COUNTS3), "sqrt-inverse"))
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y, weight=ctx.class_weight))


def test_weights_come_from_the_training_split_only():
    y = torch.tensor([0] * 60 + [1] * 25 + [2] * 15)
    split = {"train": torch.arange(0, 100, 2), "val": torch.arange(1, 100, 4), "test": torch.arange(3, 100, 4)}
    task = Task(name="t", kind="graph", class_names=["a", "b", "c"], y=y.clone(), split=split).validate()

    def weights_of(task):
        train = task.split["train"]  # what the trainer hands over: the training split only
        ctx = RemedyContext(num_classes=task.num_classes, train_index=train, train_labels=task.y[train])
        build_remedy("weighted").setup(ctx)
        return ctx.class_weight, ctx.priors

    before = weights_of(task)
    changed = task.y.clone()
    held_out = torch.cat([split["val"], split["test"]])
    changed[held_out] = 2  # every val/test label rewritten
    after = weights_of(Task(name="t", kind="graph", class_names=["a", "b", "c"], y=changed, split=split))
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_weighted_bad_scheme_refused():
    with pytest.raises(HgimbError, match="parameter scheme must be one of inverse, sqrt-inverse, effective-number, got 'bogus'"):
        build_remedy("weighted", {"scheme": "bogus"})
    with pytest.raises(HgimbError, match="beta"):
        build_remedy("weighted", {"beta": 1.5})


# ------------------------------------------------------------------ focal
def test_focal_gamma0_is_cross_entropy():
    remedy, _ = built("focal", COUNTS3, {"gamma": 0})
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y), atol=1e-6)


def test_focal_gamma0_with_weights_is_weighted_ce():
    remedy, ctx = built("weighted+focal", COUNTS3, {"gamma": "0"})  # string params as from the CLI
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y, weight=ctx.class_weight), atol=1e-6)
    remedy, _ = built("focal", [80, 20], {"gamma": 0, "alpha": 0.25})
    logits, y = batch(c=2)
    expected = F.cross_entropy(logits, y, weight=torch.tensor([0.75, 0.25]))
    assert torch.allclose(remedy.loss(logits, y, 0), expected, atol=1e-6)


def test_focal_matches_paper_formula_and_downweights_easy_items():
    logits, y = batch()
    p_t = F.softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
    expected = (-(1 - p_t) ** 2 * p_t.log()).mean()
    assert torch.allclose(focal_loss(logits, y, 2.0), expected, atol=1e-6)
    easy = torch.tensor([[5.0, 0.0, 0.0]])
    ratio = focal_loss(easy, torch.tensor([0]), 2.0) / F.cross_entropy(easy, torch.tensor([0]))
    assert ratio < 1e-3  # (1 - p)^2 with p ~ 0.987


def test_focal_weighted_uses_weights_as_alpha():
    remedy, ctx = built("weighted+focal", COUNTS3)
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), focal_loss(logits, y, 2.0, ctx.class_weight))
    assert not torch.allclose(remedy.loss(logits, y, 0), focal_loss(logits, y, 2.0))


def test_focal_alpha_rules():
    remedy, _ = built("focal", COUNTS3, {"alpha": "auto"})
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), focal_loss(logits, y, 2.0, class_weights(torch.tensor(COUNTS3))))
    with pytest.raises(HgimbError, match="binary"):
        built("focal", COUNTS3, {"alpha": 0.25})
    remedy, _ = built("weighted+focal", COUNTS3, {"alpha": "auto"})
    with pytest.raises(HgimbError, match="alpha=none"):
        remedy.loss(logits, y, 0)
    with pytest.raises(HgimbError, match="gamma"):
        build_remedy("focal", {"gamma": -1})


# ------------------------------------------------------------------ pos-weight
def test_pos_weight_refused_on_three_classes():
    with pytest.raises(HgimbError, match="needs a binary task; this task has 3 classes.*'weighted'"):
        built("pos-weight", COUNTS3)


def test_pos_weight_is_bce_with_pos_weight():
    remedy, _ = built("pos-weight", [80, 20])
    logits, y = batch(c=2)
    z = logits[:, 1] - logits[:, 0]
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(4.0))(z, y.float())
    assert torch.allclose(remedy.loss(logits, y, 0), expected)
    remedy, _ = built("pos-weight", [80, 20], {"pos_weight": 1})
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y), atol=1e-6)  # BCE(z) == 2-logit CE
    remedy, _ = built("weighted+pos-weight", [80, 20])
    with pytest.raises(HgimbError, match="already weights"):
        remedy.loss(logits, y, 0)


# ------------------------------------------------------------------ prior-shifted CE
def test_balanced_softmax_uniform_prior_is_ce():
    remedy, _ = built("balanced-softmax", [30, 30, 30])
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y))
    remedy, ctx = built("balanced-softmax", COUNTS3)
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits + ctx.priors.log(), y))
    assert not torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y))


def test_logit_adjusted_gradient_is_shifted_by_prior():
    tau = 0.7
    remedy, ctx = built("logit-adjusted", COUNTS3, {"tau": tau})
    logits, y = batch()
    logits.requires_grad_(True)
    remedy.loss(logits, y, 0).backward()
    # d/dlogits CE(logits + tau log pi) = softmax(logits + tau log pi) - onehot, over N
    expected = (F.softmax(logits.detach() + tau * ctx.priors.log(), -1) - F.one_hot(y, 3)) / len(y)
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    plain = (F.softmax(logits.detach(), -1) - F.one_hot(y, 3)) / len(y)
    assert not torch.allclose(logits.grad, plain, atol=1e-3)
    # the rare class's gradient pushes its logit up harder than plain CE: its shifted probability is smaller
    assert (logits.grad[:, 2] <= plain[:, 2] + 1e-7).all()
    remedy0, _ = built("logit-adjusted", COUNTS3, {"tau": 0})
    assert torch.allclose(remedy0.loss(logits, y, 0), F.cross_entropy(logits, y))


# ------------------------------------------------------------------ LDAM / DRW
def test_ldam_margins_order_and_scale():
    m = ldam_margins(torch.tensor([1000, 100, 10]), max_margin=0.5)
    assert m[2].item() == pytest.approx(0.5) and bool((m[:-1] < m[1:]).all())
    assert (m[0] / m[1]).item() == pytest.approx(10 ** -0.25)


def test_ldam_loss_formula():
    remedy, _ = built("ldam", [1000, 100, 10], {"s": 2.0})
    logits, y = batch()
    m = ldam_margins(torch.tensor([1000, 100, 10]), 0.5)
    expected = F.cross_entropy(2.0 * (logits - F.one_hot(y, 3) * m), y)
    assert torch.allclose(remedy.loss(logits, y, 0), expected)


def test_drw_switches_weights_at_the_right_epoch():
    remedy, ctx = built("drw", COUNTS3, {"drw_epoch": 0.8}, epochs=10)
    logits, y = batch()
    w = class_weights(torch.tensor(COUNTS3), "effective-number", 0.9999)
    assert ctx.class_weight_at(7) is None and torch.allclose(ctx.class_weight_at(8), w)
    assert torch.allclose(remedy.loss(logits, y, 7), F.cross_entropy(logits, y))
    assert torch.allclose(remedy.loss(logits, y, 8), F.cross_entropy(logits, y, weight=w))
    _, ctx = built("drw", COUNTS3, {"drw_epoch": 3}, epochs=10)
    assert ctx.class_weight_at(2) is None and ctx.class_weight_at(3) is not None
    _, ctx = built("drw", COUNTS3, epochs=1)  # a fraction never lands past the last epoch
    assert ctx.class_weight_at(0) is not None
    with pytest.raises(HgimbError, match="drw_epoch=10 is not before the end"):
        built("drw", COUNTS3, {"drw_epoch": 10}, epochs=10)


def test_ldam_drw_composes():
    remedy, ctx = built("ldam+drw", [1000, 100, 10], epochs=100)
    logits, y = batch()
    m = ldam_margins(torch.tensor([1000, 100, 10]), 0.5)
    shifted = 30 * (logits - F.one_hot(y, 3) * m)
    w = class_weights(torch.tensor([1000, 100, 10]), "effective-number", 0.9999)
    assert torch.allclose(remedy.loss(logits, y, 79), F.cross_entropy(shifted, y))
    assert torch.allclose(remedy.loss(logits, y, 80), F.cross_entropy(shifted, y, weight=w))
    remedy, _ = built("weighted+drw", COUNTS3)
    with pytest.raises(HgimbError, match="'drw'.*'weighted'"):
        remedy.loss(logits, y, 9)


# ------------------------------------------------------------------ label smoothing, soft targets
def test_label_smoothing_matches_torch_and_takes_soft_targets():
    remedy, _ = built("label-smoothing", COUNTS3, {"smoothing": 0.2})
    logits, y = batch()
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits, y, label_smoothing=0.2), atol=1e-6)
    soft = F.one_hot(y, 3).float()
    assert torch.allclose(remedy.loss(logits, soft, 0), remedy.loss(logits, y, 0), atol=1e-6)


@pytest.mark.parametrize("spec", ["none", "weighted", "focal", "balanced-softmax", "logit-adjusted", "ldam",
                                  "label-smoothing", "weighted+focal", "ldam+drw"])
def test_one_hot_soft_targets_equal_hard(spec):
    remedy, _ = built(spec, COUNTS3, epochs=1)
    logits, y = batch()
    hard, soft = remedy.loss(logits, y, 0), remedy.loss(logits, F.one_hot(y, 3).float(), 0)
    assert torch.allclose(hard, soft, atol=1e-5) and math.isfinite(hard.item())


def test_pos_weight_soft_targets_equal_hard():
    remedy, _ = built("pos-weight", [80, 20])
    logits, y = batch(c=2)
    assert torch.allclose(remedy.loss(logits, y, 0), remedy.loss(logits, F.one_hot(y, 2).float(), 0))
