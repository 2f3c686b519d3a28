"""Benchmark grids: expand a grid into runs, run them in parallel with a resumable results
store, and turn the store into a leaderboard (``python -m hgimb.bench``).

Library use::

    from hgimb.benchkit import expand, load_grid, run_grid, load_results, leaderboard, write_report
    outcome = run_grid(expand(load_grid("configs/bench/smoke.yaml")), "bench/smoke", workers=2)
    board = leaderboard(load_results("bench/smoke"), metric="macro_f1", split="test")
    print(markdown_table(board))

``run_grid`` (and ``plan``) live in :mod:`hgimb.benchkit.runner`, which imports torch; the grid
and report modules do not. :mod:`hgimb.benchkit.docs` holds what the scripts under ``scripts/``
share to write their tables into README.md / BENCHMARKS.md (``mean_std``, ``table``,
``replace_section``, ``machine``, ...).
"""
from .grid import Grid, expand, grid_from_mapping, load_grid, parse_seeds, run_id, run_name  # noqa: F401
from .report import leaderboard, load_results, markdown_table, rank_summary, write_report  # noqa: F401
from .store import ResultStore, read_rows  # noqa: F401


def run_grid(*args, **kwargs):
    """See :func:`hgimb.benchkit.runner.run_grid` (imported lazily: it imports torch)."""
    from .runner import run_grid as _run_grid

    return _run_grid(*args, **kwargs)
