"""Data-parallel training (hgimb/engine/distributed.py): torchrun with 2 CPU processes (gloo on
loopback) against the single-process run.

Full-batch node training and graph batches without BatchNorm/dropout are the same computation
split over ranks (the loss is taken over the gathered global batch), so parameters must match the
single-process run to float tolerance; every rank must hold identical parameters; only rank 0
writes anything.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hgimb.config import RunConfig
from hgimb.engine import distributed, load_task, run_experiment
from hgimb.engine.batching import BATCHING
from hgimb.engine.trainer import Trainer
from hgimb.errors import HgimbError

NODE_ARGS = ["--dataset", "synthetic", "--dataset-option", "num_movies=300", "--model", "rgcn",
             "--remedy", "weighted", "--epochs", "4", "--hidden", "8", "--patience", "10", "--quiet", "--no-plots"]
RUN_NAME = "synthetic-rgcn-weighted-s0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_env(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HGIMB_CACHE=str(tmp_path / "cache"), MASTER_ADDR="127.0.0.1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    return env


def assert_same_parameters(a, b, atol):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=0), (key, float((a[key] - b[key]).abs().max()))


# ------------------------------------------------------------------------------ no processes
def test_without_torchrun_everything_is_one_process():
    assert distributed.env_world({}) == distributed.SINGLE
    assert distributed.env_world({"WORLD_SIZE": "1", "RANK": "0"}) == distributed.SINGLE
    world = distributed.init(torch.device("cpu"))
    assert not world.active and world.is_main and not distributed.initialized()


@pytest.mark.parametrize("environ, message", [
    ({"WORLD_SIZE": "two", "RANK": "0"}, "expected integers"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK must be in 0..WORLD_SIZE-1"),
    ({"WORLD_SIZE": "2"}, "RANK must be in"),
    ({"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR and MASTER_PORT not set"),
])
def test_bad_torchrun_environment_is_one_line(environ, message):
    with pytest.raises(HgimbError, match=message):
        distributed.env_world(environ)


def test_strided_shards_are_disjoint_cover_the_epoch_and_differ_by_at_most_one():
    items = torch.tensor([5, 3, 3, 9, 1, 5, 5, 0, 7, 2, 8])  # repeats, as an over-sampler gives
    for size in (1, 2, 3, 4, 12):
        shards = [distributed.shard(items, distributed.World(r, size)) for r in range(size)]
        assert sorted(torch.cat(shards).tolist()) == sorted(items.tolist())
        lengths = [s.numel() for s in shards]
        assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
        # row j of rank r is epoch position j * size + r: gathering in that order restores the epoch
        keys = [j * size + r for r, s in enumerate(shards) for j in range(s.numel())]
        restored = torch.cat(shards)[torch.argsort(torch.tensor(keys))]
        assert restored.tolist() == items.tolist()


# ------------------------------------------------------------------------------ graph task
def toy_graph_task():
    """24 small graphs, two imbalanced classes, 13 training graphs (an odd count: shards of 7 and
    6, and with 3 per rank-batch one rank takes an empty step)."""
    from torch_geometric.data import Data

    from hgimb.data.task import Task

    generator = torch.Generator().manual_seed(7)
    labels = torch.tensor([0] * 17 + [1] * 7)[torch.randperm(24, generator=generator)]
    graphs = []
    for label in labels.tolist():
        n = int(torch.randint(3, 7, (1,), generator=generator))
        x = torch.rand(n, 4, generator=generator) + 0.5 * label
        src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = src != dst
        edge_index = torch.stack([src[keep], dst[keep]])
        edge_attr = torch.rand(edge_index.size(1), 3, generator=generator)
        graphs.append(Data(x=x, edge_index=edge_index, edge_attr=edge_attr))
    order = torch.randperm(24, generator=generator)
    split = {"train": order[:13], "val": order[13:18], "test": order[18:]}
    return Task(name="toy", kind="graph", class_names=["a", "b"], y=labels, split=split, graphs=graphs)


def graph_config(batch_size, batch_norm, dropout, remedy="focal"):
    return RunConfig(dataset="toy", model="cgcnn", remedy=remedy, epochs=4, hidden=8, layers=2, dropout=dropout,
                     batch_size=batch_size, model_options={"batch_norm": batch_norm, "fc_hidden": 8},
                     patience=10, quiet=True)


GRAPH_RUNS = {  # name -> (config per rank, single-process batch size that is the same computation, or None)
    "plain": (graph_config(3, batch_norm=False, dropout=0.0), 6),
    "batch_norm": (graph_config(3, batch_norm=True, dropout=0.5, remedy="oversample+weighted"), None),
}


# ------------------------------------------------------------------------------ the ranks
def rank_main(out_dir: str) -> None:
    """What each torchrun process runs (this file as a script): the CLI on the node task from its
    own working directory ``rank<RANK>`` (so that anything a rank writes lands in its folder),
    then, in the same process group (a script may run several experiments), the graph-task runs
    and the collectives' checks."""
    from hgimb.train import main

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    os.chdir(Path(out_dir) / f"rank{rank}")
    code = main(NODE_ARGS)  # joins the process group torchrun describes
    if code:
        raise SystemExit(code)
    os.chdir(out_dir)
    results = {}
    world = distributed.init(torch.device("cpu"))  # the group the CLI joined
    assert world.size == 2
    for name, (cfg, _) in GRAPH_RUNS.items():
        outcome = Trainer.from_config(cfg, toy_graph_task()).fit()
        results[name] = {"state": outcome.model.state_dict(), "history": outcome.history,
                         "logits": outcome.logits, "world_size": outcome.world_size}
    if "neighbor-sampling" in BATCHING:  # node mini-batches: seeds sharded like any other items
        cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 300}, model="rgcn", remedy="smote",
                        epochs=3, hidden=8, batch_size=32, patience=10, quiet=True)
        outcome = Trainer.from_config(cfg, load_task(cfg)).fit()
        results["sampled"] = {"state": outcome.model.state_dict(), "history": outcome.history,
                              "logits": outcome.logits, "world_size": outcome.world_size}
        # featureless tables with row-sparse gradients (--sparse-embeddings on): rows all-gathered
        cfg = cfg.replace(remedy="none", sparse_embeddings="on")
        outcome = Trainer.from_config(cfg, load_task(cfg)).fit()
        results["sampled_sparse"] = {"state": outcome.model.state_dict(), "logits": outcome.logits}
    # a sparse gradient summed over ranks as rows equals the dense all-reduce
    rank = world.rank
    sparse = torch.nn.Parameter(torch.zeros(6, 2))
    sparse.hgimb_sparse_grad = True
    rows = torch.tensor([0, 3]) if rank == 0 else torch.tensor([3, 5, 5])
    sparse.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), torch.arange(2.0 * rows.numel()).view(-1, 2) + rank, (6, 2))
    dense = torch.nn.Parameter(torch.zeros(6, 2))
    dense.grad = sparse.grad.to_dense()
    distributed.all_reduce_gradients([sparse, dense])
    results["sparse_grad"] = (sparse.grad.is_sparse, sparse.grad.to_dense(), dense.grad)
    items = torch.arange(11) * 10
    mine = distributed.shard(items, world)
    rows, own = distributed.gather_rows(mine.float().unsqueeze(1), dtype=torch.float32, ndim=2)
    results["gathered"], results["own"] = rows.squeeze(1).long(), rows[own].squeeze(1).long()
    results["mine"] = mine

    def load():
        if world.is_main:
            raise HgimbError("no such dataset file")
        return "loaded"

    try:
        distributed.main_first(load)
    except HgimbError as exc:
        results["load_error"] = str(exc)
    torch.save(results, Path(out_dir) / f"results{rank}.pt")


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    """One ``torchrun --nproc_per_node 2`` launch (gloo on loopback) of :func:`rank_main`."""
    tmp = tmp_path_factory.mktemp("torchrun")
    for rank in (0, 1):
        (tmp / f"rank{rank}").mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), __file__, str(tmp)]
    done = subprocess.run(command, cwd=tmp, env=quiet_env(tmp), capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = [torch.load(tmp / f"results{rank}.pt", weights_only=False) for rank in (0, 1)]
    return tmp, done, results


# ------------------------------------------------------------------------------ node task (the CLI)
def test_torchrun_writes_one_run_directory_from_rank_0_only(torchrun):
    tmp, done, _ = torchrun
    run_dir = tmp / "rank0" / "runs" / RUN_NAME
    assert sorted(p.name for p in (tmp / "rank0" / "runs").iterdir()) == [RUN_NAME]  # no temp dirs left
    for name in ("config.yaml", "metrics.json", "history.csv", "predictions.csv", "model.pt"):
        assert (run_dir / name).is_file(), name
    assert list((tmp / "rank1").rglob("*")) == []  # rank 1 wrote nothing at all
    assert done.stdout.count("run directory:") == 1 and "on 2 processes" in done.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2


def test_torchrun_full_batch_equals_the_single_process_run(torchrun, tmp_path):
    tmp, _, _ = torchrun
    run_dir = tmp / "rank0" / "runs" / RUN_NAME
    cfg = RunConfig(dataset="synthetic", dataset_options={"num_movies": 300}, model="rgcn", remedy="weighted",
                    epochs=4, hidden=8, patience=10, quiet=True, plots=False, out=str(tmp_path / "single"))
    single = run_experiment(cfg)
    assert single.metrics["world_size"] == 1
    distributed_model = torch.load(run_dir / "model.pt", weights_only=False)["state_dict"]
    # dropout 0.5 included: every rank runs the same full-graph forward with the same seed
    assert_same_parameters(single.outcome.model.state_dict(), distributed_model, atol=1e-4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = (run_dir / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in history[1:]]
    n_train = single.metrics["split"]["sizes"]["train"]
    assert [int(r["train_items"]) for r in rows] == [h["train_items"] for h in single.outcome.history] == [n_train] * 4
    for row, expected in zip(rows, single.outcome.history):
        assert float(row["train_loss"]) == pytest.approx(expected["train_loss"], rel=1e-5)
    assert metrics["test"]["macro_f1"] == pytest.approx(single.metrics["test"]["macro_f1"], abs=1e-9)
    assert metrics["best_epoch"] == single.metrics["best_epoch"]


# ------------------------------------------------------------------------------ graph task (the trainer)
def test_graph_batches_every_rank_holds_the_same_model(torchrun):
    rank0, rank1 = torchrun[2]
    for name in GRAPH_RUNS:
        assert rank0[name]["world_size"] == rank1[name]["world_size"] == 2
        for key, value in rank0[name]["state"].items():  # BatchNorm running statistics included
            assert torch.equal(value, rank1[name]["state"][key]), (name, key)
        assert torch.equal(rank0[name]["logits"], rank1[name]["logits"])
        untimed = [[{k: v for k, v in h.items() if k != "seconds"} for h in r[name]["history"]] for r in (rank0, rank1)]
        assert untimed[0] == untimed[1]  # losses, items, validation scores: the same on both ranks


def test_neighbour_sampling_shards_seeds_and_keeps_ranks_identical(torchrun):
    if "neighbor-sampling" not in BATCHING:
        pytest.skip("the neighbor-sampling batching strategy is not registered in hgimb/engine/batching.py")
    rank0, rank1 = torchrun[2]
    for key, value in rank0["sampled"]["state"].items():
        assert torch.equal(value, rank1["sampled"]["state"][key]), key
    assert torch.equal(rank0["sampled"]["logits"], rank1["sampled"]["logits"])
    # smote adds synthetic rows after the gather: the items counted are the real training nodes,
    # as many as the full-batch CLI run on the same data saw
    history = (torchrun[0] / "rank0" / "runs" / RUN_NAME / "history.csv").read_text().splitlines()
    n_train = int(history[1].split(",")[history[0].split(",").index("train_items")])
    assert [h["train_items"] for h in rank0["sampled"]["history"]] == [n_train] * 3


def test_sparse_embedding_gradients_are_summed_as_rows_and_ranks_stay_identical(torchrun):
    rank0, rank1 = torchrun[2]
    for result in (rank0, rank1):
        is_sparse, summed, dense = result["sparse_grad"]
        assert is_sparse and torch.equal(summed, dense) and summed.abs().sum() > 0
    if "sampled_sparse" not in rank0:
        pytest.skip("the neighbor-sampling batching strategy is not registered")
    for key, value in rank0["sampled_sparse"]["state"].items():
        assert torch.equal(value, rank1["sampled_sparse"]["state"][key]), key
    assert torch.equal(rank0["sampled_sparse"]["logits"], rank1["sampled_sparse"]["logits"])


def test_graph_batches_equal_single_process_batches_of_twice_the_size(torchrun):
    rank0, _ = torchrun[2]
    for name, (cfg, single_batch) in GRAPH_RUNS.items():
        single = Trainer.from_config(cfg.replace(batch_size=single_batch or cfg.batch_size), toy_graph_task()).fit()
        assert [h["train_items"] for h in rank0[name]["history"]] == [h["train_items"] for h in single.history]
        if single_batch is None:  # BatchNorm statistics per rank and dropout: not the same computation
            continue
        assert [h["train_items"] for h in single.history] == [13] * 4
        for got, expected in zip(rank0[name]["history"], single.history):
            assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
        assert_same_parameters(single.model.state_dict(), rank0[name]["state"], atol=1e-5)


def test_gather_restores_item_order_and_rank_0_failures_reach_every_rank(torchrun):
    for rank, result in enumerate(torchrun[2]):
        assert result["gathered"].tolist() == list(range(0, 110, 10))
        assert result["own"].tolist() == result["mine"].tolist() == list(range(rank * 10, 110, 20))
        assert "no such dataset file" in result["load_error"]
    assert torchrun[2][1]["load_error"].startswith("rank 0 failed")


if __name__ == "__main__":  # a torchrun rank (see the torchrun fixture)
    rank_main(*sys.argv[1:])
