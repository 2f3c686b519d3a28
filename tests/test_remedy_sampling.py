"""Sampling (train_index) and synthesis (synthesize) remedies."""
import pytest
import torch
import torch.nn.functional as F

from hgimb.errors import HgimbError
from hgimb.imbalance import RemedyContext, build_remedy

OFFSET = 1000  # training items are numbered from here, so "indices come from train_index" can fail


def make_ctx(counts, epochs=10, names=None):
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return RemedyContext(num_classes=len(counts), train_index=torch.arange(labels.numel()) + OFFSET,
                         train_labels=labels, epochs=epochs,
                         class_names=names or [f"c{i}" for i in range(len(counts))])


def built(spec, counts, params=None):
    remedy = build_remedy(spec, params)
    ctx = make_ctx(counts)
    remedy.setup(ctx)
    return remedy, ctx


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def class_of(index, ctx):
    return ctx.train_labels[index - OFFSET]


# ------------------------------------------------------------------ balanced sampler
def test_balanced_sampler_frequencies_are_uniform():
    remedy, ctx = built("balanced-sampler", [500, 50, 5])
    rng = gen()
    draws = torch.cat([remedy.train_index(epoch, rng) for epoch in range(100)])
    assert draws.numel() == 100 * 555
    assert bool(((draws >= OFFSET) & (draws < OFFSET + 555)).all())
    freq = torch.bincount(class_of(draws, ctx), minlength=3).double() / draws.numel()
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)
    # uniform within a class: every one of the 5 rare items is drawn about equally often
    rare = torch.bincount(draws[class_of(draws, ctx) == 2] - OFFSET - 550, minlength=5).double()
    assert (rare / rare.sum() - 0.2).abs().max() < 0.02


def test_samplers_are_deterministic_and_fresh_each_epoch():
    for spec in ("balanced-sampler", "oversample", "undersample"):
        remedy, _ = built(spec, [60, 20, 5])
        a = [remedy.train_index(e, gen(3)) for e in range(2)]
        b = [remedy.train_index(e, gen(3)) for e in range(2)]
        assert all(torch.equal(x, y) for x, y in zip(a, b)), spec
        rng = gen(3)
        first, second = remedy.train_index(0, rng), remedy.train_index(1, rng)
        assert not torch.equal(first, second), spec


# ------------------------------------------------------------------ over / under sampling
def test_oversample_counts():
    remedy, ctx = built("oversample", [60, 20, 5])
    idx = remedy.train_index(0, gen())
    assert torch.bincount(class_of(idx, ctx)).tolist() == [60, 60, 60]
    assert set(range(OFFSET, OFFSET + 85)) <= set(idx.tolist())  # random over-sampling keeps every original
    remedy, ctx = built("oversample", [60, 20, 5], {"sampling_strategy": "minority"})
    assert torch.bincount(class_of(remedy.train_index(0, gen()), ctx)).tolist() == [60, 20, 60]
    remedy, ctx = built("oversample", [60, 20, 5], {"sampling_strategy": "c2:30,1:25"})  # names or indices
    assert torch.bincount(class_of(remedy.train_index(0, gen()), ctx)).tolist() == [60, 25, 30]
    remedy, ctx = built("oversample", [80, 10], {"sampling_strategy": "0.5"})
    assert torch.bincount(class_of(remedy.train_index(0, gen()), ctx)).tolist() == [80, 40]


def test_undersample_counts():
    remedy, ctx = built("undersample", [60, 20, 5])
    idx = remedy.train_index(0, gen())
    assert torch.bincount(class_of(idx, ctx)).tolist() == [5, 5, 5]
    assert idx.unique().numel() == 15  # without replacement
    remedy, ctx = built("undersample", [60, 20, 5], {"sampling_strategy": "majority"})
    assert torch.bincount(class_of(remedy.train_index(0, gen()), ctx)).tolist() == [5, 20, 5]


def test_bad_sampling_strategy_refused():
    with pytest.raises(HgimbError, match="sampling_strategy='bogus'"):
        built("oversample", [60, 20, 5], {"sampling_strategy": "bogus"})
    with pytest.raises(HgimbError, match="does not fit the training labels"):
        built("oversample", [60, 20, 5], {"sampling_strategy": 0.5})  # a ratio needs a binary task
    with pytest.raises(HgimbError, match="class 'nope'"):
        built("undersample", [60, 20, 5], {"sampling_strategy": {"nope": 3}})


# ------------------------------------------------------------------ SMOTE
def embeddings(counts, dim=4, seed=0):
    g = gen(seed)
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    h = torch.randn(y.numel(), dim, generator=g) + 3 * y[:, None].float()
    return h, y


def test_smote_samples_lie_on_segments_between_same_class_neighbours():
    counts, k = [40, 12, 6], 3
    remedy, _ = built("smote", counts, {"k": k})
    h, y = embeddings(counts)
    h_new, y_new = remedy.synthesize(h, y, gen())
    n = y.numel()
    assert torch.equal(h_new[:n], h) and torch.equal(y_new[:n], y)  # originals first, unchanged
    assert torch.bincount(y_new).tolist() == [40, 40, 40]  # only minority classes grew, to the majority
    syn_h, syn_y = h_new[n:], y_new[n:]
    for cls in (1, 2):
        members = h[y == cls]
        # segment test for every (synthetic, i, j): s = h_i + lam (h_j - h_i), lam in [0, 1]
        s = syn_h[syn_y == cls][:, None, None, :]
        hi, hj = members[None, :, None, :], members[None, None, :, :]
        d = hj - hi
        lam = ((s - hi) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12)
        resid = (hi + lam[..., None] * d - s).norm(dim=-1)
        ok = (resid < 1e-4) & (lam >= -1e-6) & (lam <= 1 + 1e-6)
        # and j must be one of the k nearest same-class neighbours of i
        dist = torch.cdist(members, members)
        dist.fill_diagonal_(float("inf"))
        near = torch.zeros_like(dist, dtype=torch.bool)
        near.scatter_(1, dist.topk(k, largest=False).indices, True)
        assert bool((ok & near[None]).flatten(1).any(1).all()), cls


def test_smote_keeps_gradients_and_is_deterministic():
    remedy, _ = built("smote", [40, 12, 6])
    h, y = embeddings([40, 12, 6])
    h.requires_grad_(True)
    h_new, _ = remedy.synthesize(h, y, gen())
    h_new[y.numel():].sum().backward()  # synthetic rows only
    touched = h.grad.abs().sum(1) > 0
    assert touched[y != 0].any() and not touched[y == 0].any()  # gradients reach minority embeddings
    again, _ = remedy.synthesize(h.detach(), y, gen())
    assert torch.equal(again, h_new.detach())


def test_smote_single_member_class_and_k_clipping():
    remedy, _ = built("smote", [10, 3, 1], {"k": 5})  # k clipped to 2 and 0
    h, y = embeddings([10, 3, 1])
    h_new, y_new = remedy.synthesize(h, y, gen())
    assert torch.bincount(y_new).tolist() == [10, 10, 10]
    assert torch.equal(h_new[y.numel():][y_new[y.numel():] == 2], h[13].expand(9, -1))  # copies of the only one


# ------------------------------------------------------------------ mixup
def test_mixup_targets_are_convex_combinations():
    remedy, _ = built("mixup", [40, 12, 6], {"mixup_alpha": 0.4})
    h, y = embeddings([40, 12, 6])
    h_new, t_new = remedy.synthesize(h, y, gen())
    n = y.numel()
    assert h_new.shape == (2 * n, 4) and t_new.shape == (2 * n, 3)
    assert torch.equal(t_new[:n], F.one_hot(y, 3).float()) and torch.equal(h_new[:n], h)
    mixed = t_new[n:]
    assert torch.allclose(mixed.sum(1), torch.ones(n)) and bool((mixed >= 0).all())
    # row i is lam * h_i + (1 - lam) * h_j for a partner j: solve lam for every (i, j) by least squares
    fixed = (h_new[n:] - h).norm(dim=1) < 1e-6  # the permutation's fixed points mix an item with itself
    assert torch.equal(mixed[fixed], F.one_hot(y[fixed], 3).float())
    d = h[:, None, :] - h[None, :, :]  # h_i - h_j
    r = h_new[n:][:, None, :] - h[None, :, :]  # mixed_i - h_j
    lam_ij = (r * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12)
    resid = (r - lam_ij[..., None] * d).norm(dim=-1)
    resid.fill_diagonal_(float("inf"))
    rows = torch.arange(n)[~fixed]
    j = resid[rows].argmin(1)
    lam = lam_ij[rows, j]
    assert resid[rows, j].max() < 1e-4
    assert torch.allclose(lam, lam[0].expand_as(lam), atol=1e-4) and 0 <= lam[0] <= 1  # one lam per call
    expected = lam[:, None] * F.one_hot(y[rows], 3) + (1 - lam[:, None]) * F.one_hot(y[j], 3)
    assert torch.allclose(mixed[rows], expected, atol=1e-4)


def test_mixup_soft_targets_feed_every_soft_capable_loss():
    h, y = embeddings([40, 12, 6])
    for spec in ("mixup", "mixup+focal", "mixup+label-smoothing", "mixup+ldam", "mixup+weighted"):
        remedy, _ = built(spec, [40, 12, 6])
        h_new, t_new = remedy.synthesize(h, y, gen())
        value = remedy.loss(torch.nn.Linear(4, 3)(h_new), t_new, 0)
        assert value.ndim == 0 and torch.isfinite(value), spec
