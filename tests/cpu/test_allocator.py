"""reuse_freed_memory: a freed large tensor's pages are reused instead of faulted in again."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from rlvr.cpu.allocator import reuse_freed_memory
if sys.argv[1] == "on":
    assert reuse_freed_memory()
for _ in range(4):  # the first rounds grow the heap; the last is what a training step sees
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.ones(16 * 2**20)  # 64 MiB, freed at once
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_memory_is_reused_without_page_faults():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    pages = 16 * 2**20 * 4 // 4096
    assert faults("off") > 4 * pages  # glibc default: every 64 MiB tensor is a fresh mmap
    assert faults("on") < pages // 4
