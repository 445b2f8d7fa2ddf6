"""What both bench children share: the result channel to the parent, peak memory, model facts."""

import json
import os
import re
import resource
import sys
from pathlib import Path

FD_ENV = "RLVR_BENCH_FD"


class Channel:
    """The child's side of the protocol."""

    def __init__(self) -> None:
        self._out = os.fdopen(int(os.environ[FD_ENV]), "w", buffering=1)

    def send(self, event: str, **data) -> None:
        self._out.write(json.dumps({"event": event, **data}) + "\n")
        self._out.flush()

    def wait(self) -> bool:
        """Block until the parent says ``step`` (True) or ``stop`` / closes the pipe (False)."""
        return sys.stdin.readline().strip() == "step"


def reset_peak(device) -> bool:
    """Restart the peak-memory counters so they cover the steps, not loading. False where the
    kernel refuses to reset the RSS high-water mark (then the process peak is all there is)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def memory_report(device, reset: bool) -> dict:
    """Peak memory in MiB: the process's (``ru_maxrss``, KiB on Linux), the steps' (VmHWM since
    :func:`reset_peak`), and on CUDA the allocator's peak since the reset."""
    import torch

    report = {"process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
    if reset and hwm:
        report["step_peak_rss_mib"] = int(hwm.group(1)) / 1024
    if device.type == "cuda":
        report["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        report["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    return report


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_info(model) -> dict:
    """Parameter count (``parameters()`` yields a tied embedding once) and the shapes the ceiling uses."""
    config = getattr(model, "config", None)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "hidden_size": getattr(config, "hidden_size", None),
        "intermediate_size": getattr(config, "intermediate_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
