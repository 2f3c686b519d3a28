"""Initialisation (prior-bias) and post-hoc remedies (threshold, posthoc-logit-adjust)."""
import inspect

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn

from hgimb.errors import HgimbError
from hgimb.imbalance import RemedyContext, build_remedy
from hgimb.imbalance.posthoc import Threshold, fit_class_offsets


def make_ctx(counts):
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return RemedyContext(num_classes=len(counts), train_index=torch.arange(labels.numel()), train_labels=labels)


def built(spec, counts, params=None):
    remedy = build_remedy(spec, params)
    ctx = make_ctx(counts)
    remedy.setup(ctx)
    return remedy, ctx


class TinyModel(nn.Module):
    def __init__(self, dim=4, classes=3):
        super().__init__()
        self.head = nn.Linear(dim, classes)


# ------------------------------------------------------------------ prior-bias
def test_prior_bias_sets_log_priors():
    remedy, ctx = built("prior-bias", [70, 20, 10])
    model = TinyModel()
    remedy.init_model(model)
    assert torch.allclose(model.head.bias, torch.tensor([0.7, 0.2, 0.1]).log())
    assert torch.allclose(torch.softmax(model.head(torch.zeros(1, 4)), -1)[0], ctx.priors)
    model.head = nn.Linear(4, 3, bias=False)
    with pytest.raises(HgimbError, match="nn.Linear with a bias"):
        remedy.init_model(model)


# ------------------------------------------------------------------ threshold, binary
P1 = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
Y = np.array([0, 0, 0, 1, 1, 0, 1, 1])


def binary_logits(p1):
    p1 = torch.as_tensor(p1, dtype=torch.float32)
    return torch.stack([torch.zeros_like(p1), torch.log(p1 / (1 - p1))], 1)


def test_threshold_recovers_the_f1_optimal_threshold():
    remedy, _ = built("threshold", [80, 20])
    fitted = remedy.adjust(binary_logits(P1), torch.as_tensor(Y))["threshold"]
    t = fitted["threshold"]
    # by hand: "p1 >= 0.35" gives TP 4, FP 1, FN 0, F1 8/9, the best cut; any t in (0.3, 0.35] realises it
    assert 0.3 < t <= 0.35 and fitted["val_f1"] == pytest.approx(8 / 9)
    # the cut sits midway between the two scores in logit space (margin on both sides), not on a score
    assert np.log(t / (1 - t)) == pytest.approx((np.log(0.3 / 0.7) + np.log(0.35 / 0.65)) / 2, abs=1e-6)
    best = max(f1_score(Y, P1 >= cut) for cut in P1)
    pred = remedy.apply(binary_logits(P1)).argmax(1).numpy()
    assert f1_score(Y, pred) == pytest.approx(best) == pytest.approx(8 / 9)
    # on new items, argmax of the shifted logits is exactly "p1 >= t"
    grid = np.linspace(0.01, 0.99, 981)
    assert np.array_equal(remedy.apply(binary_logits(grid)).argmax(1).numpy(), (grid >= t).astype(int))


def test_threshold_only_sees_validation():
    # apply takes logits only: test labels cannot reach it; adjust depends on the validation labels
    assert list(inspect.signature(Threshold.apply).parameters) == ["self", "logits"]
    remedy, _ = built("threshold", [80, 20])
    flipped = remedy.adjust(binary_logits(P1), torch.as_tensor(1 - Y))["threshold"]["threshold"]
    assert not 0.3 < flipped <= 0.35
    with pytest.raises(RuntimeError):
        build_remedy("threshold").parts[0].apply(binary_logits(P1))


def test_threshold_one_class_validation_keeps_argmax():
    remedy, _ = built("threshold", [80, 20])
    fitted = remedy.adjust(binary_logits(P1), torch.zeros(8, dtype=torch.long))["threshold"]
    assert fitted["threshold"] == 0.5 and fitted["val_f1"] is None
    assert torch.equal(remedy.apply(binary_logits(P1)), binary_logits(P1))


# ------------------------------------------------------------------ threshold, multi-class
def multiclass_val(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y] + np.array([1.0, 0.0, -0.5])  # biased to the majority
    return torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(y)


def test_threshold_multiclass_offsets_improve_macro_f1_and_are_coordinate_optimal():
    logits, y = multiclass_val()
    remedy, _ = built("threshold", [70, 20, 10])
    fitted = remedy.adjust(logits, y)["threshold"]
    pred = remedy.apply(logits).argmax(1).numpy()
    score = f1_score(y.numpy(), pred, average="macro")
    assert fitted["val_macro_f1"] == pytest.approx(score)
    assert score > f1_score(y.numpy(), logits.argmax(1).numpy(), average="macro") + 0.01
    offsets = np.array(fitted["offsets"])
    assert abs(offsets.sum()) < 1e-9
    # no single-class change on a fine grid does better (coordinate-wise optimum)
    for c in range(3):
        for delta in np.linspace(-3, 3, 121):
            trial = offsets.copy()
            trial[c] += delta
            alt = (logits.double().numpy() + trial).argmax(1)
            assert f1_score(y.numpy(), alt, average="macro") <= score + 1e-12
    again, _ = fit_class_offsets(logits.double().numpy(), y.numpy())
    assert np.array_equal(again, offsets)  # deterministic


# ------------------------------------------------------------------ posthoc logit adjustment
def test_posthoc_logit_adjust():
    remedy, ctx = built("posthoc-logit-adjust", [70, 20, 10], {"tau": 0.5})
    logits, y = multiclass_val(50)
    fitted = remedy.adjust(logits, y)["posthoc-logit-adjust"]
    assert fitted["tau"] == 0.5 and np.allclose(fitted["log_prior"], np.log([0.7, 0.2, 0.1]))
    assert torch.allclose(remedy.apply(logits), logits - 0.5 * ctx.priors.log())
    uniform, _ = built("posthoc-logit-adjust", [10, 10, 10])
    assert torch.allclose(uniform.apply(logits), logits - np.log(1 / 3))  # a constant: same argmax
    assert torch.equal(uniform.apply(logits).argmax(1), logits.argmax(1))


def test_posthoc_chain_in_written_order():
    remedy, ctx = built("posthoc-logit-adjust+threshold", [70, 20, 10])
    logits, y = multiclass_val()
    fitted = remedy.adjust(logits, y)
    assert set(fitted) == {"posthoc-logit-adjust", "threshold"}
    offsets = torch.tensor(fitted["threshold"]["offsets"], dtype=torch.float32)
    assert torch.allclose(remedy.apply(logits), logits - ctx.priors.log() + offsets, atol=1e-5)
