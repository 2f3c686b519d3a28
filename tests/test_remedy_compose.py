"""Registry and composition of the remedies, plus a trainer-shaped smoke run of every remedy."""
import pytest
import torch
from torch import nn

from hgimb.errors import HgimbError
from hgimb.imbalance import REMEDIES, RemedyContext, build_remedy, remedy_params
from hgimb.imbalance.losses import focal_loss

NAMES = {"none", "weighted", "pos-weight", "focal", "balanced-softmax", "logit-adjusted", "ldam", "drw",
         "label-smoothing", "balanced-sampler", "oversample", "undersample", "smote", "mixup", "prior-bias",
         "threshold", "posthoc-logit-adjust"}


def make_ctx(counts, epochs=4):
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return RemedyContext(num_classes=len(counts), train_index=torch.arange(labels.numel()), train_labels=labels,
                         epochs=epochs, class_names=[f"c{i}" for i in range(len(counts))])


def test_registry_lists_every_remedy_with_a_docstring():
    assert NAMES <= set(REMEDIES.names())
    for name in NAMES:
        cls = REMEDIES.get(name)
        assert cls.name == name and REMEDIES.describe(name), name
    assert remedy_params("ldam+drw") == {"max_margin": 0.5, "s": 30.0, "drw_epoch": 0.8, "beta": 0.9999}


def test_weighted_focal_composes():
    remedy = build_remedy("weighted+focal", {"scheme": "effective-number", "gamma": 1.0})
    ctx = make_ctx([50, 10, 2])
    remedy.setup(ctx)
    logits, y = torch.randn(20, 3), torch.randint(3, (20,))
    assert torch.allclose(remedy.loss(logits, y, 0), focal_loss(logits, y, 1.0, ctx.class_weight))


@pytest.mark.parametrize("spec,match", [
    ("focal+ldam", "'focal' and 'ldam' both decide the training loss"),
    ("balanced-sampler+oversample", "'balanced-sampler' and 'oversample' both decide which samples"),
    ("smote+mixup", "both decide synthetic samples"),
    ("pos-weight+label-smoothing", "both decide the training loss"),
])
def test_conflicting_compositions_refused(spec, match):
    with pytest.raises(HgimbError, match=match):
        build_remedy(spec)


def test_unknown_or_bad_params_refused():
    with pytest.raises(HgimbError, match=r"\['gama'\] not used by remedy 'focal'"):
        build_remedy("focal", {"gama": 1})
    with pytest.raises(HgimbError, match="unknown remedy 'focall'"):
        build_remedy("focall")
    for spec, params in [("ldam", {"s": 0}), ("label-smoothing", {"smoothing": 1}), ("smote", {"k": 0}),
                         ("mixup", {"mixup_alpha": "x"}), ("drw", {"drw_epoch": 2.5}), ("threshold", {"max_rounds": 0}),
                         ("pos-weight", {"pos_weight": -1})]:
        with pytest.raises(HgimbError, match=f"remedy '{spec}': parameter .* must be"):
            build_remedy(spec, params)


SPECS = sorted(NAMES) + ["weighted+focal", "ldam+drw", "balanced-sampler+smote+threshold", "oversample+mixup+focal",
                         "prior-bias+balanced-softmax+posthoc-logit-adjust", "undersample+label-smoothing"]


@pytest.mark.parametrize("counts", [[40, 8], [40, 12, 4]], ids=["binary", "3-class"])
@pytest.mark.parametrize("spec", SPECS)
def test_every_remedy_runs_the_trainer_protocol(spec, counts):
    """The trainer's call sequence (setup, init_model, train_index, synthesize, head, loss, adjust, apply)."""
    if spec == "pos-weight" and len(counts) == 3:
        pytest.skip("binary only (refusal tested in test_remedy_losses.py)")
    torch.manual_seed(0)
    num_classes, dim = len(counts), 5
    y_all = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(counts))
    x_all = torch.randn(y_all.numel(), dim) + y_all[:, None]
    remedy = build_remedy(spec)
    ctx = make_ctx(counts)
    remedy.setup(ctx)
    encoder, head = nn.Linear(dim, dim), nn.Linear(dim, num_classes)
    model = nn.Module()
    model.head = head
    remedy.init_model(model)
    optim = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=0.05)
    rng = torch.Generator().manual_seed(0)
    for epoch in range(ctx.epochs):
        idx = remedy.train_index(epoch, rng)
        idx = ctx.train_index[torch.randperm(ctx.train_index.numel(), generator=rng)] if idx is None else idx
        h, target = encoder(x_all[idx]), y_all[idx]
        out = remedy.synthesize(h, target, rng)
        if out is not None:
            h, target = out
        loss = remedy.loss(head(h), target, epoch)
        assert loss.ndim == 0 and torch.isfinite(loss)
        optim.zero_grad()
        loss.backward()
        assert encoder.weight.grad is not None and torch.isfinite(encoder.weight.grad).all()
        optim.step()
    with torch.no_grad():
        val_logits = head(encoder(x_all))
    fitted = remedy.adjust(val_logits, y_all)
    assert isinstance(fitted, dict)
    applied = remedy.apply(val_logits)
    assert applied.shape == val_logits.shape and torch.isfinite(applied).all()
