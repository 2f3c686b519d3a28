"""The glibc allocator settings (hgimb/engine/allocator.py): applied once, opt-out honoured."""
import os
import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
glibc_only = pytest.mark.skipif(not GLIBC, reason="glibc mallopt only: elsewhere the settings are left alone")

CHECK = (
    "from hgimb.engine.allocator import tune_allocator\n"
    "applied = tune_allocator()\n"
    "assert tune_allocator() is applied\n"
    "print(applied)\n"
)


def _run(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


@glibc_only
def test_applied_on_glibc_and_opt_out():
    assert _run({}) == "True"
    assert _run({"HGIMB_MALLOC": "system"}) == "False"


@glibc_only
def test_big_allocations_stay_in_the_heap_after_tuning():
    """With mmap disabled, freeing a 64 MiB tensor must not unmap it: the next one reuses it."""
    code = (
        "import resource, torch\n"
        "from hgimb.engine.allocator import tune_allocator\n"
        "assert tune_allocator()\n"
        "torch.empty(16 * 2**20).fill_(1)\n"  # first use grows the heap
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    torch.empty(16 * 2**20).fill_(1)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    tuned = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    plain = int(subprocess.run([sys.executable, "-c", code.replace("assert tune_allocator()", "pass")],
                               capture_output=True, text=True, check=True).stdout)
    # untuned: every 64 MiB tensor is a fresh mmap, 16k page faults each; tuned: reused heap pages
    assert plain > 20 * 10000
    assert tuned < plain / 10
