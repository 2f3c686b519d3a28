"""graphsha: GraphSHA's hard anchors, SemiMixup features and anchor-neighbourhood edges, checked
against the authors' equations (gens.py, neighbor_dist.py) on small hand-made cases."""
import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_undirected

from hgimb.config import RunConfig
from hgimb.data.task import Task
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError
from hgimb.imbalance import BatchContext, RemedyContext, build_remedy
from hgimb.imbalance import graphsha as sha
from hgimb.models import ModelConfig, build_model

from conftest import real_path


# ------------------------------------------------------------------ toy graphs
def homo_task(features=True):
    """30 papers, 3 classes (train: 8 / 4 / 2), an undirected ring with chords."""
    g = torch.Generator().manual_seed(0)
    n = 30
    data = HeteroData()
    if features:
        data["paper"].x = torch.randn(n, 5, generator=g)
    data["paper"].num_nodes = n
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    chords = torch.stack([torch.arange(0, n, 3), (torch.arange(0, n, 3) + 7) % n])
    data["paper", "cites", "paper"].edge_index = to_undirected(torch.cat([ring, chords], 1), num_nodes=n)
    y = torch.tensor([0] * 8 + [1] * 4 + [2] * 2 + [0, 1, 2] * 5 + [0])
    split = {"train": torch.arange(14), "val": torch.arange(14, 22), "test": torch.arange(22, n)}
    return Task(name="toy", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"])


def acm_task():
    """ACM-shaped: papers (target) and authors, each relation stored with its reverse."""
    g = torch.Generator().manual_seed(1)
    n, m = 24, 10
    data = HeteroData()
    data["paper"].x = torch.randn(n, 6, generator=g)
    data["paper"].num_nodes = n
    data["author"].x = torch.randn(m, 3, generator=g)
    data["author"].num_nodes = m
    p = torch.arange(n)
    cite = torch.stack([p, (p + 1) % n])
    data["paper", "cite", "paper"].edge_index = cite
    data["paper", "ref", "paper"].edge_index = cite.flip(0)
    writes = torch.cat([torch.stack([p, p % m]), torch.stack([p, (p + 3) % m])], 1)
    data["paper", "to_author", "author"].edge_index = writes
    data["author", "to_paper", "paper"].edge_index = writes.flip(0)
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 2 + [0, 1, 2] * 4 + [1])
    split = {"train": torch.arange(11), "val": torch.arange(11, 17), "test": torch.arange(17, n)}
    return Task(name="toy-acm", kind="node", class_names=["a", "b", "c"], y=y, split=split, data=data,
                target_types=["paper"])


def ready(task, **params):
    remedy = build_remedy("graphsha", params).parts[0]
    ctx = RemedyContext.for_task(task)
    remedy.check(ctx)
    remedy.setup(ctx)
    return remedy


def neighbours_in(edge_index, node):
    return set(edge_index[0][edge_index[1] == node].tolist())


def replay(remedy, epoch, rng):
    """The anchors, auxiliary nodes and lam the next ``augment`` call draws (a copy of the generator)."""
    twin = torch.Generator().manual_seed(0)
    twin.set_state(rng.get_state())
    src, dst, semimix = remedy.pairs(epoch, twin)
    lam = sha.beta_draws(sha.SHA_BETA if semimix else sha.WARMUP_BETA, src.numel(), twin)
    return remedy.train_nodes[src], remedy.train_nodes[dst], lam, semimix


# ------------------------------------------------------------------ the equations
def test_hard_pairs_follow_the_code_distribution():
    """gens.sampling_node_source: anchor a of class c with probability ~ 1 - P[a, c]; auxiliary
    class k ~ P[a, k] (own class masked); auxiliary node b of k ~ P[b, c]. Class sizes 3000 / 2 / 3:
    mean 1001.67, so class 1 gets int(999.67) = 999 and class 2 int(998.67) = 998 anchors."""
    labels = torch.tensor([0] * 3000 + [1, 1] + [2, 2, 2])
    probs = torch.full((3005, 3), 1.0 / 3)
    probs[:3000] = torch.tensor([0.6, 0.3, 0.1])
    probs[3000:3002] = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.5, 0.4]])
    probs[3002:] = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.0, 0.9]])
    rng = torch.Generator().manual_seed(0)
    src, dst = [], []
    for _ in range(20):
        s, d = sha.hard_pairs(probs, labels, 3, use_max=False, no_mask=False, rng=rng)
        src.append(s)
        dst.append(d)
    src, dst = torch.cat(src), torch.cat(dst)
    assert src.numel() == 20 * (999 + 998)
    assert bool((labels[src] != 0).all())
    two = labels[src] == 2
    # anchors of class 2: 1 - P[:, 2] = 0.9, 0.8, 0.1 -> 0.5, 0.444, 0.056
    freq = torch.bincount(src[two] - 3002, minlength=3).double() / int(two.sum())
    assert torch.allclose(freq, torch.tensor([0.9, 0.8, 0.1], dtype=torch.float64) / 1.8, atol=0.02)
    # anchor 3002 ([0.2, 0.7, 0.1]): auxiliary class 0 w.p. 0.2 / 0.9, class 1 w.p. 0.7 / 0.9
    mine = src == 3002
    aux_class = labels[dst[mine]]
    assert abs(float((aux_class == 1).double().mean()) - 0.7 / 0.9) < 0.03
    # auxiliary nodes of class 1 for anchors of class 2: P[b, 2] = 0.0, 0.4 -> always node 3001
    assert set(dst[two & (labels[dst] == 1)].tolist()) == {3001}
    # class 1 anchors: 1 - P[:, 1] = 0.5, 0.5 (uniform); never their own class as auxiliary
    assert bool((labels[dst[labels[src] == 1]] != 1).all())
    # --no_mask lets the own class in: anchor 3004 ([0.1, 0.0, 0.9]) picks class 2 ~ 90 %
    s, d = sha.hard_pairs(probs, labels, 3, use_max=False, no_mask=True, rng=rng)
    own = labels[d[s == 3004]] == 2
    assert own.numel() > 20 and float(own.double().mean()) > 0.7


def test_balance_to_mean_or_max():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    probs = torch.full((10, 3), 1.0 / 3)
    rng = torch.Generator().manual_seed(0)
    s, _ = sha.hard_pairs(probs, labels, 3, use_max=False, no_mask=False, rng=rng)
    assert torch.bincount(labels[s], minlength=3).tolist() == [0, 0, 2]  # mean 3.33: int(0.33), int(2.33)
    s, _ = sha.hard_pairs(probs, labels, 3, use_max=True, no_mask=False, rng=rng)
    assert torch.bincount(labels[s], minlength=3).tolist() == [0, 3, 5]


def test_weighted_draws_without_replacement():
    """Rows.take: one draw ~ the weights; two draws: P({0, 1}) = w0 w1 / (1 - w0) + w1 w0 / (1 - w1)."""
    rows = sha.Rows.of(torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2]), 1, torch.tensor([0.5, 0.3, 0.2]))
    rng = torch.Generator().manual_seed(0)
    nodes = torch.zeros(20000, dtype=torch.long)
    pos, col = rows.take(nodes, torch.ones(20000, dtype=torch.long), rng)
    assert torch.equal(pos, torch.arange(20000))
    assert torch.allclose(torch.bincount(col).double() / 20000, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
                          atol=0.015)
    pos, col = rows.take(nodes, torch.full((20000,), 2), rng)
    pairs = col.view(-1, 2)
    assert bool((pairs[:, 0] != pairs[:, 1]).all())
    missing_two = float((pairs != 2).all(1).double().mean())
    assert abs(missing_two - (0.5 * 0.3 / 0.5 + 0.3 * 0.5 / 0.7)) < 0.015
    _, col = rows.take(torch.zeros(1, dtype=torch.long), torch.tensor([7]), rng)
    assert sorted(col.tolist()) == [0, 1, 2]  # capped at the support


@pytest.mark.parametrize("topk", [3, 128])
def test_ppr_rows_equal_the_code_matrix(monkeypatch, topk):
    """neighbor_dist.get_PPR_adj: alpha (I - (1 - alpha) D^-1/2 (A + I) D^-1/2)^-1, top-k per column,
    columns normalised; node i's distribution is row i."""
    monkeypatch.setattr(sha, "PPR_TOPK", topk)
    ei = homo_task().data["paper", "cites", "paper"].edge_index
    n = 30
    adj = np.zeros((n, n))
    adj[ei[0].numpy(), ei[1].numpy()] = 1.0
    a_tilde = adj + np.eye(n)
    d = np.diag(1.0 / np.sqrt(a_tilde.sum(1)))
    ppr = 0.05 * np.linalg.inv(np.eye(n) - 0.95 * d @ a_tilde @ d)
    k = min(topk, n)
    ppr[ppr.argsort(axis=0)[: n - k], np.arange(n)] = 0.0
    ppr = ppr / ppr.sum(0)
    rows = sha.diffusion_rows(ei, n, "ppr", torch.device("cpu"))
    dense = np.zeros((n, n))
    for i in range(n):
        sl = slice(int(rows.rowptr[i]), int(rows.rowptr[i + 1]))
        dense[i, rows.col[sl].numpy()] = rows.weight[sl].numpy()
    assert np.allclose(dense, ppr, atol=1e-5)


def test_semimixup_features_labels_and_anchor_edges():
    """After the warmup: x_new = lam x[anchor] + (1 - lam) x[aux] with lam ~ Beta(1, 100); label of
    the anchor; distinct neighbours drawn from the anchor's in-neighbours (sha_gdc=none), at most
    its degree. During the warmup every in-edge of the source is copied."""
    task = homo_task()
    remedy = ready(task, sha_warmup=1, sha_gdc="none")
    data = task.data
    rel = ("paper", "cites", "paper")
    x, ei, n = data["paper"].x, data[rel].edge_index, 30
    rng = torch.Generator().manual_seed(3)
    lams = []
    for epoch in (0, 2, 3, 4):
        anchors, aux, lam, semimix = replay(remedy, epoch, rng)
        aug = remedy.augment(data, BatchContext(task.split["train"], epoch), rng)
        assert semimix == (epoch > 1)
        k = anchors.numel()
        assert k == (aug.data["paper"].num_nodes - n) and aug.new_rows.tolist() == list(range(n, n + k))
        assert torch.allclose(aug.data["paper"].x[n:], lam * x[anchors] + (1 - lam) * x[aux], atol=1e-6)
        assert torch.equal(aug.new_targets, task.y[anchors])
        new = aug.data[rel].edge_index[:, ei.size(1):]
        for i in range(k):
            into = new[0][new[1] == n + i].tolist()
            out = new[1][new[0] == n + i].tolist()
            assert sorted(into) == sorted(out)  # cites is stored both ways: appended both ways
            if semimix:
                assert len(set(into)) == len(into) <= len(neighbours_in(ei, int(anchors[i])))
                assert set(into) <= neighbours_in(ei, int(anchors[i]))
            else:
                assert sorted(into) == sorted(ei[0][ei[1] == anchors[i]].tolist())
        if semimix:
            lams.append(lam)
            assert torch.bincount(task.y[anchors], minlength=3).tolist() == [0, 0, 2]  # mean 4.67: 0, int(2.67)
        else:
            assert torch.bincount(task.y[anchors], minlength=3).tolist() == [0, 4, 6]  # to the max, 8
    assert data["paper"].num_nodes == 30 and data[rel].edge_index.size(1) == ei.size(1)  # untouched
    assert float(torch.cat(lams).max()) < 0.2  # Beta(1, 100): mean 1/101


def test_ppr_edges_come_from_the_anchor_row():
    task = homo_task()
    remedy = ready(task, sha_warmup=0)
    rows = remedy.views[0].dist
    rng = torch.Generator().manual_seed(0)
    anchors, _, _, _ = replay(remedy, 1, rng)
    aug = remedy.augment(task.data, BatchContext(task.split["train"], 1), rng)
    ei = aug.data["paper", "cites", "paper"].edge_index
    for i, a in enumerate(anchors.tolist()):
        support = set(rows.col[int(rows.rowptr[a]):int(rows.rowptr[a + 1])].tolist())
        assert set(ei[0][ei[1] == 30 + i].tolist()) <= support


def test_hardness_reads_the_previous_training_logits():
    task = homo_task()
    remedy = ready(task)
    model = build_model("gcn", task, ModelConfig(hidden=8, layers=2, options={"style": "reference"}))
    remedy.init_model(model)
    items = task.split["train"].flip(0)
    remedy.batch(BatchContext(items, 0))
    h = torch.randn(items.numel() + 3, model.head.in_features)
    assert remedy.synthesize(h, task.y[items], torch.Generator()) is None
    expected = model.head(h[:items.numel()]).detach()
    assert torch.allclose(remedy.prev[remedy.position[items]], expected)


# ------------------------------------------------------------------ heterogeneous and refusals
def test_heterogeneous_views_keep_reverse_relations_consistent():
    task = acm_task()
    remedy = ready(task, sha_warmup=0)
    views = {v.rel: v.mirror for v in remedy.views}
    assert views == {("paper", "cite", "paper"): ("paper", "ref", "paper"),
                     ("paper", "ref", "paper"): ("paper", "cite", "paper"),
                     ("author", "to_paper", "paper"): ("paper", "to_author", "author")}
    rng = torch.Generator().manual_seed(0)
    anchors, _, _, _ = replay(remedy, 1, rng)
    aug = remedy.augment(task.data, BatchContext(task.split["train"], 1), rng)
    d, n = aug.data, 24

    def appended(rel):
        return d[rel].edge_index[:, task.data[rel].edge_index.size(1):]

    cite, ref = appended(("paper", "cite", "paper")), appended(("paper", "ref", "paper"))
    to_author, to_paper = appended(("paper", "to_author", "author")), appended(("author", "to_paper", "paper"))
    # each pair holds the same edges, transposed
    assert sorted(map(tuple, cite.t().tolist())) == sorted(map(tuple, ref.flip(0).t().tolist()))
    assert sorted(map(tuple, to_author.t().tolist())) == sorted(map(tuple, to_paper.flip(0).t().tolist()))
    writes = task.data["author", "to_paper", "paper"].edge_index
    for i, a in enumerate(anchors.tolist()):  # authors come from the anchor's authors
        assert set(to_paper[0][to_paper[1] == n + i].tolist()) <= neighbours_in(writes, a)
    cfg = RunConfig(dataset="toy-acm", model="rgcn", remedy="graphsha", epochs=4, hidden=8, seed=0, quiet=True,
                    remedy_params={"sha_warmup": 1})
    model = build_model("rgcn", task, ModelConfig(hidden=8, layers=2))
    out = Trainer(task, model, build_remedy("graphsha", {"sha_warmup": 1}), cfg).fit()
    assert out.epochs_run == 4 and torch.isfinite(out.logits).all()


def test_refusals():
    with pytest.raises(HgimbError, match="has none"):
        ready(homo_task(features=False))
    task = homo_task()
    cfg = RunConfig(dataset="toy", model="gcn", epochs=1, hidden=8, batch_size=4, quiet=True)
    model = build_model("gcn", task, ModelConfig(hidden=8, layers=2))
    with pytest.raises(HgimbError, match="full-graph"):
        Trainer(task, model, build_remedy("graphsha"), cfg)
    with pytest.raises(HgimbError, match="synthetic samples"):
        build_remedy("graphsha+graphens")


# ------------------------------------------------------------------ training
def _fit(remedy, params, seed=0):
    task = homo_task()
    cfg = RunConfig(dataset="toy", model="gcn", remedy=remedy, epochs=6, hidden=8, seed=seed, quiet=True,
                    remedy_params=params)
    torch.manual_seed(seed)
    model = build_model("gcn", task, ModelConfig(hidden=8, layers=2, options={"style": "reference"}))
    return Trainer(task, model, build_remedy(remedy, params), cfg).fit()


@pytest.mark.parametrize("remedy, params", [("graphsha+balanced-softmax", {"sha_warmup": 2}),
                                            ("graphsha+tam", {"sha_warmup": 2, "tam_warmup": 1})])
def test_compositions_train(remedy, params):
    out = _fit(remedy, params)
    assert out.epochs_run == 6 and all(np.isfinite(h["train_loss"]) for h in out.history)


def test_same_seed_same_run():
    a, b = _fit("graphsha", {"sha_warmup": 1}), _fit("graphsha", {"sha_warmup": 1})
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert torch.equal(a.logits, b.logits)
    c = _fit("graphsha", {"sha_warmup": 1}, seed=1)
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_end_to_end_on_cora():
    from hgimb.engine import run_experiment

    real_path("planetoid", "ind.cora.x")
    cfg = RunConfig(dataset="cora", model="gcn", model_options={"style": "reference"}, remedy="graphsha",
                    remedy_params={"sha_warmup": 1}, seed=0, epochs=4, patience=100, imbalance_ratio=10,
                    imbalance_type="step", plots=False, quiet=True, data_root=str(real_path()))
    result = run_experiment(cfg, write=False)
    assert result.metrics["remedy"] == "graphsha" and np.isfinite(result.metrics["test"]["macro_f1"])
