"""The label prior a loss trains under is that of the rows it sees (RemedyContext.loss_priors):
every sampler and synthesis remedy declares the class counts it makes (Remedy.loss_class_counts),
and the declaration is checked here against the targets the loss actually receives in training."""
import math

import pytest
import torch
import torch.nn.functional as F

from hgimb.config import RunConfig
from hgimb.engine.trainer import Trainer
from hgimb.imbalance import REMEDIES, RemedyContext, build_remedy
from hgimb.imbalance.base import ComposedRemedy, Remedy, cross_entropy
from hgimb.imbalance.graphsha import sha_added
from hgimb.models import ModelConfig, build_model
from test_bat import toy_task

REFERENCE = {"style": "reference"}
# the remedies that decide which rows the loss sees (sampler, augmentation, synthesis)
STAGES = sorted(n for n in REMEDIES.names()
                if any(REMEDIES.get(n)().owns(h) for h in ComposedRemedy.PIPELINE))
# per-run parameters that make the first epochs representative (no warmup)
PARAMS = {"graphsha": {"sha_warmup": 0}}


class Spy(Remedy):
    """Plain cross-entropy that records the class mass of every step's targets."""

    name = "spy"

    def __init__(self):
        super().__init__()
        self.seen = []

    def loss(self, logits, target, epoch):
        mass = F.one_hot(target, logits.size(-1)).double() if not target.dtype.is_floating_point else target.double()
        self.seen.append((epoch, mass.sum(0)))
        return cross_entropy(logits, target)


def train_with_spy(name, epochs):
    task = toy_task()
    remedy = build_remedy(name, PARAMS.get(name))
    spy = Spy()
    composed = ComposedRemedy([*remedy.parts, spy])
    cfg = RunConfig(dataset="toy", model="gcn", epochs=epochs, patience=epochs, hidden=8, layers=2, seed=0,
                    quiet=True, plots=False)
    torch.manual_seed(0)
    model = build_model("gcn", task, ModelConfig(hidden=8, layers=2, options=REFERENCE))
    Trainer(task, model, composed, cfg).fit()
    return task, composed, spy


def test_the_stages_are_the_ones_expected():
    assert set(STAGES) == {"balanced-sampler", "oversample", "undersample", "smote", "mixup", "graphens",
                           "graphens-ego", "graphsha", "graphsmote", "bat"}


@pytest.mark.parametrize("name", STAGES)
def test_declared_counts_are_what_the_loss_sees(name):
    epochs = 40 if name == "balanced-sampler" else 3
    task, composed, spy = train_with_spy(name, epochs)
    split = torch.bincount(task.y[task.split["train"]], minlength=3).double()
    declared = composed.ctx.loss_class_counts
    per_epoch = {}
    for epoch, mass in spy.seen:
        per_epoch[epoch] = per_epoch.get(epoch, 0) + mass
    seen = torch.stack([per_epoch[e] for e in sorted(per_epoch) if e >= 1])  # after graphsha's warmup epoch
    if name == "balanced-sampler":  # random draws: the mean over epochs, within 4 standard errors
        assert declared.tolist() == pytest.approx([22 / 3] * 3)
        sd = math.sqrt(22 * (1 / 3) * (2 / 3) / seen.size(0))
        assert (seen.mean(0) - declared).abs().max() < 4 * sd
        return
    expected = split if declared is None else declared
    if name == "mixup":  # the same distribution as the split, twice the mass
        assert declared is None
        assert torch.allclose(seen / seen.sum(1, keepdim=True), (split / split.sum()).expand_as(seen))
        return
    assert declared is not None and not torch.equal(declared, split)
    for row in seen:
        assert row.tolist() == pytest.approx(expected.tolist())


def test_balanced_softmax_after_graphsha_uses_the_balanced_prior():
    counts = torch.tensor([34.0, 7.0, 158.0, 341.0, 73.0, 15.0, 3.0])  # Cora's training split at rho = 100
    added = sha_added(counts, use_max=False)
    assert added.tolist() == [56, 83, 0, 0, 17, 75, 87]  # mean class size 90.14 -> int(90.14 - n_c)
    task = toy_task()
    remedy = build_remedy("graphsha+balanced-softmax")
    ctx = RemedyContext.for_task(task, epochs=3)
    remedy.setup(ctx)
    split = ctx.train_class_counts.double()
    after = split + sha_added(split, use_max=False)
    assert ctx.loss_class_counts.tolist() == after.tolist()
    prior = (after / after.sum()).float()
    logits, y = torch.randn(9, 3), torch.randint(3, (9,))
    assert torch.allclose(remedy.loss(logits, y, 0), F.cross_entropy(logits + prior.log(), y))
    # without a stage that changes the rows, the prior is the split's, as before
    alone = build_remedy("balanced-softmax")
    ctx = RemedyContext.for_task(task, epochs=3)
    alone.setup(ctx)
    assert ctx.loss_class_counts is None and torch.equal(ctx.loss_priors, ctx.priors)
    assert torch.allclose(alone.loss(logits, y, 0), F.cross_entropy(logits + ctx.priors.log(), y))


def test_posthoc_and_tam_base_read_the_same_prior():
    task = toy_task()
    remedy = build_remedy("oversample+tam+posthoc-logit-adjust")
    ctx = RemedyContext.for_task(task, epochs=3)
    remedy.setup(ctx)
    assert ctx.loss_class_counts.tolist() == [10.0, 10.0, 10.0]  # RandomOverSampler 'auto'
    logits = torch.randn(5, 3)
    assert torch.allclose(remedy.apply(logits), logits - torch.full((3,), 1 / 3).log())
