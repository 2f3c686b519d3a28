"""Extension contracts: a third-party model and remedy, defined here, plug into the engine.

The model is a plain ``nn.Module`` (no hgimb base class) with the model contract's ``encode`` and
``head``; the remedy is a ``Remedy`` subclass that reads the typed contexts. Both are registered
with the public decorators (so ``--model`` / ``--remedy`` find them) and are also passed to
``Trainer`` as objects. They are registered for this module's tests only: other tests run every
registered model.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hgimb.config import RunConfig
from hgimb.engine.run import build_reports, load_task, run_experiment
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import REMEDIES, BatchContext, Remedy, RemedyContext, build_remedy, register_remedy
from hgimb.models import registry as model_registry
from hgimb.models.registry import register_model
from hgimb.params import Param, Range


class PluginMLP(nn.Module):
    """Target nodes' own features -> hidden -> logits. Declares nothing beyond encode/head, so
    it trains full-batch only."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, target: str = "movie"):
        super().__init__()
        self.target = target
        self.lin = nn.Linear(in_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def encode(self, data) -> torch.Tensor:
        return torch.relu(self.lin(data[self.target].x))

    def forward(self, data) -> torch.Tensor:
        return self.head(self.encode(data))


class SampledPluginMLP(PluginMLP):
    """The same model, declaring that it runs on sampled subgraphs: 0 hops, so a subgraph holds
    the seeds alone and ``encode`` returns one row per seed."""

    supports_neighbor_sampling = True
    num_hops = 0


def build_plugin_mlp(task, cfg):
    return PluginMLP(task.data["movie"].x.size(1), cfg.hidden, task.num_classes)


class InverseFrequency(Remedy):
    """Test plugin: cross-entropy weighted by inverse training-class frequency."""

    name = "plugin-inverse-frequency"
    spec = (Param("power", float, 1.0, "exponent of the inverse class frequency", Range(0)),)

    def setup(self, ctx: RemedyContext) -> None:
        super().setup(ctx)
        weight = ctx.train_class_counts.double().clamp_min(1).pow(-float(self.p["power"]))
        self.weight = (weight / weight.mean()).float()
        self.steps = []  # (epoch, item ids) the trainer announced

    def batch(self, step: BatchContext) -> None:
        self.steps.append((step.epoch, step.items.cpu()))

    def loss(self, logits, target, epoch):
        return F.cross_entropy(logits, target, weight=self.weight.to(logits.device))


@pytest.fixture(scope="module", autouse=True)
def registered_plugins():
    register_model("plugin-mlp", kinds=("node",), help="test plugin: an MLP on the target features")(build_plugin_mlp)
    register_remedy(InverseFrequency)
    yield
    # the registries have no public removal (plugins register for the life of the process)
    model_registry._BUILDERS.pop(("plugin-mlp", "node"))
    model_registry._PARAMS.pop(("plugin-mlp", "node"), None)
    for registry, name in ((model_registry.MODELS, "plugin-mlp"), (REMEDIES, InverseFrequency.name)):
        registry._entries.pop(name)
        registry._help.pop(name)


def config(**changes):
    base = dict(dataset="synthetic", model="plugin-mlp", remedy="plugin-inverse-frequency", epochs=2, hidden=16,
                seed=0, quiet=True, plots=False)
    return RunConfig(**{**base, **changes})


def test_registered_plugins_train_by_name():
    result = run_experiment(config(remedy="plugin-inverse-frequency+threshold", remedy_params={"power": 0.5}),
                            write=False)
    assert result.metrics["model"] == "plugin-mlp"
    assert result.metrics["remedy"] == "plugin-inverse-frequency+threshold"
    assert result.metrics["epochs_run"] == 2 and 0.0 <= result.metrics["test"]["macro_f1"] <= 1.0
    assert "threshold" in result.metrics["posthoc"]  # the plugin composes with a built-in remedy
    assert result.outcome.remedy.parts[0].p["power"] == 0.5


def test_objects_passed_to_trainer():
    cfg = config()
    task = load_task(cfg)
    torch.manual_seed(0)
    model = PluginMLP(task.data["movie"].x.size(1), 16, task.num_classes)
    remedy = InverseFrequency()
    outcome = Trainer(task, model, remedy, cfg).fit()
    assert outcome.model is model and outcome.epochs_run == 2
    # full batch: one step per epoch, whose ids are the training items (shuffled)
    assert [epoch for epoch, _ in remedy.steps] == [0, 1]
    for _, items in remedy.steps:
        assert torch.equal(items.sort().values, task.split["train"].sort().values)
    reports = build_reports(task, outcome)
    assert set(reports) == {"val", "test"} and 0.0 <= reports["test"]["macro_f1"] <= 1.0
    # a remedy list composes too, with the same result as the registry path for the same seed
    by_name = Trainer.from_config(cfg, task).fit()
    torch.manual_seed(0)
    again = Trainer(task, build_plugin_mlp(task, cfg), [InverseFrequency()], cfg).fit()
    assert torch.equal(by_name.logits, again.logits)


def test_prior_bias_uses_the_linear_head():
    cfg = config(remedy="prior-bias")
    task = load_task(cfg)
    model = PluginMLP(task.data["movie"].x.size(1), 16, task.num_classes)
    trainer = Trainer(task, model, build_remedy("prior-bias"), cfg.replace(epochs=1))
    assert torch.allclose(model.head.bias, trainer.ctx.priors.log().to(model.head.bias.dtype))

    class NoLinearHead(PluginMLP):
        def classifier_head(self):
            return None

    with pytest.raises(HgimbError, match="prior-bias.*NoLinearHead has no linear head"):
        Trainer(task, NoLinearHead(32, 16, task.num_classes), build_remedy("prior-bias"), cfg)


def test_undeclared_model_is_refused_under_minibatches_in_one_line():
    cfg = config(batch_size=16)
    task = load_task(cfg)
    with pytest.raises(HgimbError, match="PluginMLP does not declare supports_neighbor_sampling") as err:
        Trainer(task, PluginMLP(task.data["movie"].x.size(1), 16, task.num_classes), None, cfg).fit()
    assert "\n" not in str(err.value)
    with pytest.raises(HgimbError, match="does not declare supports_neighbor_sampling"):
        run_experiment(cfg, write=False)  # the registered model, by name

    class NoHops(PluginMLP):
        supports_neighbor_sampling = True

    with pytest.raises(HgimbError, match="NoHops supports neighbour sampling but declares no num_hops"):
        Trainer(task, NoHops(task.data["movie"].x.size(1), 16, task.num_classes), None, cfg).fit()


def test_declared_model_trains_on_minibatches():
    cfg = config(batch_size=16)
    task = load_task(cfg)
    remedy = InverseFrequency()
    outcome = Trainer(task, SampledPluginMLP(task.data["movie"].x.size(1), 16, task.num_classes), remedy, cfg).fit()
    assert outcome.epochs_run == 2 and outcome.logits.shape == (outcome.items.numel(), task.num_classes)
    assert all(items.numel() <= 16 for _, items in remedy.steps)
    seen = torch.cat([items for epoch, items in remedy.steps if epoch == 0])
    assert torch.equal(seen.sort().values, task.split["train"].sort().values)


def test_trainer_refuses_what_is_not_a_model_or_remedy():
    cfg = config()
    task = load_task(cfg)
    with pytest.raises(HgimbError, match="Linear has no encode"):
        Trainer(task, nn.Linear(3, 3), None, cfg)
    with pytest.raises(HgimbError, match="is not a Remedy object"):
        Trainer(task, PluginMLP(task.data["movie"].x.size(1), 16, task.num_classes), "focal", cfg)
