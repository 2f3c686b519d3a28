"""python -m hgimb.bench run --backend ray: each run a Ray task calling the same single-run
function as the local workers; the driver records rows, logs and run directories.

A fake in-process ``ray`` module (always) checks dispatch, row collection, resume and crash rows;
a tiny grid on a real local Ray instance runs when ray is installed.
"""
import json
import pickle
import sys
import types

import pytest

from hgimb.bench import main
from hgimb.benchkit import expand, grid_from_mapping, ray_backend, run_id, runner, worker
from hgimb.benchkit.store import read_rows
from hgimb.errors import HgimbError

TINY = {"datasets": ["synthetic"], "dataset_options": {"num_movies": 300}, "epochs": 2, "hidden": 8,
        "models": ["mlp"], "seeds": "0"}
FLAGS = ["--datasets", "synthetic", "--dataset-option", "num_movies=300", "--epochs", "2", "--hidden", "8",
         "--models", "mlp"]


def tiny_grid(**axes):
    return expand(grid_from_mapping({**TINY, **axes}, "test grid"))


class FakeRef:
    def __init__(self, function, args):
        self.function, self.args = function, args


class FakeRay(types.ModuleType):
    """The slice of the Ray API the runner uses. Tasks run in this process when their result is
    fetched, the most recently submitted first (so rows arrive out of submission order); ``die``
    names run ids whose task fails the way a killed worker does."""

    def __init__(self, die=(), init_error=None):
        super().__init__("ray")
        self.die, self.init_error = set(die), init_error
        self.initialized = False
        self.init_addresses, self.shutdowns = [], 0
        self.options, self.submitted, self.cancelled = [], [], []

    def is_initialized(self):
        return self.initialized

    def init(self, address=None, **kwargs):
        self.init_addresses.append(address)
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def shutdown(self):
        self.shutdowns += 1
        self.initialized = False

    def remote(self, **options):
        self.options.append(options)
        fake = self

        def decorate(function):
            class Remote:
                @staticmethod
                def remote(*args):
                    pickle.dumps(args)  # arguments travel to another machine: they must pickle
                    fake.submitted.append(args[2])  # the run id
                    return FakeRef(function, args)

            return Remote()

        return decorate

    def wait(self, refs, num_returns=1):
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref):
        if ref.args[2] in self.die:
            raise RuntimeError("The worker died unexpectedly while executing this task. Check python-core-worker-*.log")
        return pickle.loads(pickle.dumps(ref.function(*ref.args)))  # results travel back too

    def cancel(self, ref, force=False):
        self.cancelled.append(ref.args[2])


@pytest.fixture
def fake_ray(monkeypatch):
    def install(**kwargs):
        fake = FakeRay(**kwargs)
        monkeypatch.setitem(sys.modules, "ray", fake)
        return fake

    return install


def test_ray_dispatch_rows_logs_run_dirs_resume_and_crashes(tmp_path, fake_ray):
    out = tmp_path / "bench"
    configs = tiny_grid(remedies=["none", "weighted", "pos-weight", "focal"])
    ids = {cfg.remedy: run_id(cfg) for cfg in configs}
    fake = fake_ray(die={ids["focal"]})
    outcome = runner.run_grid(configs, out, backend="ray", address="ray://head:10001", quiet=True, save_runs=True)

    assert fake.init_addresses == ["ray://head:10001"] and fake.shutdowns == 1
    assert fake.options == [{"num_cpus": 1, "max_retries": 0}]
    assert sorted(fake.submitted) == sorted(ids.values())  # each run dispatched exactly once
    rows = {row["remedy"]: row for row in read_rows(out)}
    assert len(read_rows(out)) == 4 and (outcome.ok, outcome.failed, outcome.exit_code) == (2, 2, 1)
    for remedy in ("none", "weighted"):
        row = rows[remedy]
        assert row["status"] == "ok" and 0 <= row["test_macro_f1"] <= 1 and row["epochs_run"] == 2
        run_dir = out / "runs" / row["name"]  # shipped back from the task's node as an archive
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["test"]["macro_f1"] == pytest.approx(row["test_macro_f1"])
        assert f"=== run {row['run_id']} ok" in (out / row["log"]).read_text()
    assert rows["pos-weight"]["status"] == "error" and rows["pos-weight"]["error_type"] == "HgimbError"
    assert "binary" in rows["pos-weight"]["error"] and "Traceback" in (out / rows["pos-weight"]["log"]).read_text()
    died = rows["focal"]
    assert died["status"] == "error" and "worker died unexpectedly" in died["error"] and "\n" not in died["error"]
    assert "failed on Ray" in (out / died["log"]).read_text()
    assert not (out / "runs" / died["name"]).exists()
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([rows["none"]["name"], rows["weighted"]["name"]])

    # the same rows as the local backend (the same single-run function, the same seed)
    local = runner.run_grid(configs[:1], tmp_path / "local", workers=1, quiet=True)
    assert local.ok == 1
    assert read_rows(tmp_path / "local")[0]["test_macro_f1"] == rows[configs[0].remedy]["test_macro_f1"]

    # resume: nothing recorded is dispatched again (and with nothing to run, Ray is not even contacted)
    again = fake_ray()
    outcome = runner.run_grid(configs, out, backend="ray", quiet=True)
    assert again.submitted == [] and again.init_addresses == [] and outcome.skipped_done == 2
    retry = fake_ray()
    outcome = runner.run_grid(configs, out, backend="ray", quiet=True, retry_failed=True, save_runs=True)
    assert sorted(retry.submitted) == sorted([ids["pos-weight"], ids["focal"]]) and retry.init_addresses == [None]
    latest = {row["run_id"]: row for row in read_rows(out)}
    assert latest[ids["focal"]]["status"] == "ok" and latest[ids["pos-weight"]]["status"] == "error"
    assert (out / "runs" / latest[ids["focal"]]["name"] / "model.pt").is_file()
    log = (out / latest[ids["focal"]]["log"]).read_text()
    assert "failed on Ray" in log and f"=== run {ids['focal']} ok" in log  # appended, history kept


def test_ray_interrupt_cancels_what_is_still_queued(tmp_path, fake_ray, monkeypatch):
    fake = fake_ray()
    configs = tiny_grid(remedies=["none", "weighted", "focal"])
    calls = []

    def interrupted(*args):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "execute", lambda *args: {"status": "ok", "wall_seconds": 0.0})
    monkeypatch.setattr(ray_backend, "_land_result", interrupted)
    outcome = runner.run_grid(configs, tmp_path / "b", backend="ray", quiet=True, workers=2)
    assert outcome.interrupted and outcome.exit_code == 130 and read_rows(tmp_path / "b") == []
    assert len(fake.submitted) == 2  # --workers caps the runs in flight
    assert len(calls) == 1 and len(fake.cancelled) == 1 and fake.shutdowns == 1


def test_ray_missing_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = tmp_path / "b"
    assert main(FLAGS + ["--backend", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'hgimb[ray]'" in err and err.count("\n") == 1
    assert not out.exists()


def test_ray_address_errors_are_one_line(tmp_path, fake_ray, capsys):
    assert main(FLAGS + ["--address", "auto", "--out", str(tmp_path / "a")]) == 2
    assert "--address auto applies to --backend ray only" in capsys.readouterr().err
    fake_ray(init_error=ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.\n"
                                        "details"))
    assert main(FLAGS + ["--backend", "ray", "--address", "auto", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "could not connect to Ray at 'auto': Could not find any running Ray instance" in err
    assert "ray start --head" in err and err.count("\n") == 1


def test_unknown_backend_is_one_line_before_anything_runs(tmp_path):
    assert set(runner.BACKENDS) == {"local", "ray"}
    with pytest.raises(HgimbError, match=r"^--backend must be 'local' or 'ray', got 'dask'$"):
        runner.run_grid(tiny_grid(), tmp_path / "b", backend="dask", quiet=True)
    assert not (tmp_path / "b").exists()


def test_real_ray_local_instance(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'hgimb[ray]'); the fake-ray tests cover dispatch")
    monkeypatch.setenv("HGIMB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    configs = tiny_grid(remedies=["weighted", "pos-weight"])
    out = tmp_path / "bench"
    outcome = runner.run_grid(configs, out, backend="ray", quiet=True, save_runs=True)
    assert not ray.is_initialized()  # the local instance this run started is shut down
    rows = {row["remedy"]: row for row in read_rows(out)}
    assert (outcome.ok, outcome.failed) == (1, 1)
    assert rows["weighted"]["status"] == "ok" and (out / "runs" / rows["weighted"]["name"] / "metrics.json").is_file()
    assert rows["pos-weight"]["error_type"] == "HgimbError" and "Traceback" in (out / rows["pos-weight"]["log"]).read_text()
    local = runner.run_grid(configs[:1], tmp_path / "local", workers=1, quiet=True)
    assert local.ok == 1 and read_rows(tmp_path / "local")[0]["test_macro_f1"] == rows["weighted"]["test_macro_f1"]
