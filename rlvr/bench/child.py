"""The child processes of ``rlvr bench``: one per contender, so each peak memory is its own.

Protocol: the parent writes ``step`` or ``stop`` lines to the child's stdin; the child answers
with JSON lines on the file descriptor named by ``RLVR_BENCH_FD`` (its stdout and stderr go to
a log file, so library chatter never mixes with the protocol):

    {"event": "ready", ...}                    set-up done, before the first step
    {"event": "step", "wall": s, "metrics": {...}}   after each step
    {"event": "done", "memory": {...}}         after ``stop``
    {"event": "error", "message": "..."}       one line, then the child exits

Every child blocks on stdin between steps, so the parent can interleave contenders step by step
on a shared machine. Entry point: ``python -m rlvr.bench SPEC.json``.
"""

import json
import os
import tempfile
import time
import traceback
from pathlib import Path

from rlvr.bench.probe import FD_ENV, Channel, memory_report, model_info, reset_peak, synchronize  # noqa: F401


def rlvr_child(spec: dict, channel: Channel) -> None:
    """rlvr's own loop through its public API: ``setup`` then ``train_step`` per ``step`` command."""
    import torch

    from rlvr.config import load_config
    from rlvr.trainer import setup, train_step

    config = load_config(spec["recipe"], spec["overrides"])
    torch.set_num_threads(spec["threads"])
    with tempfile.TemporaryDirectory(prefix="rlvr-bench-") as tmp:
        run = setup(config, Path(tmp) / "run", resume=False)
        device = next(run.model.parameters()).device
        channel.send(
            "ready", device=str(device), threads=torch.get_num_threads(), precision=run.precision,
            rollout_precision=getattr(run.engine, "precision", "fp32"), **model_info(run.model),
        )  # fmt: skip
        reset = reset_peak(device)
        while channel.wait():
            run.step += 1
            started = time.perf_counter()
            metrics = train_step(run)
            synchronize(device)
            wall = time.perf_counter() - started
            numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            channel.send("step", wall=wall, metrics=numbers)
        memory = memory_report(device, reset)
        run.close()
    channel.send("done", memory=memory)


def ceiling_child(spec: dict, channel: Channel) -> None:
    """Sustained matmul FLOP/s in fp32 and in bf16 (the machine's two ceilings: on a CPU with AMX
    or AVX512-BF16 bf16 is several times fp32, elsewhere emulated and slower). Each ``step``
    times every shape once per dtype for about ``seconds`` after a calibration call; the parent
    keeps the best round."""
    import torch

    from rlvr.models import resolve_device

    torch.set_num_threads(spec["threads"])
    device = resolve_device(spec["device"])
    dtypes = [getattr(torch, name) for name in spec.get("dtypes", ["float32", "bfloat16"])]
    generator = torch.Generator().manual_seed(0)
    operands: dict[str, list] = {}
    for dtype in dtypes:
        operands[str(dtype).removeprefix("torch.")] = rows = []
        for m, k, n in spec["shapes"]:
            a = torch.randn(m, k, generator=generator).to(device, dtype)
            b = torch.randn(k, n, generator=generator).to(device, dtype)
            rows.append((a, b, torch.empty(m, n, device=device, dtype=dtype)))
            torch.mm(a, b, out=rows[-1][2])  # warm-up: thread pools, cuBLAS handles and heuristics
    synchronize(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    channel.send("ready", device=str(device), device_name=name, dtypes=list(operands))
    reset = reset_peak(device)
    while channel.wait():
        flops = {
            dtype: [matmul_flops_per_s(a, b, c, spec["seconds"], device) for a, b, c in rows]
            for dtype, rows in operands.items()
        }
        channel.send("step", wall=0.0, metrics={"flops": flops})
    channel.send("done", memory=memory_report(device, reset))


def matmul_flops_per_s(a, b, c, seconds: float, device) -> float:
    """2 m k n FLOP per product, over enough back-to-back products to last about ``seconds``."""
    import torch

    synchronize(device)
    started = time.perf_counter()
    torch.mm(a, b, out=c)
    synchronize(device)
    once = max(time.perf_counter() - started, 1e-6)
    count = max(1, int(seconds / once))
    synchronize(device)
    started = time.perf_counter()
    for _ in range(count):
        torch.mm(a, b, out=c)
    synchronize(device)
    elapsed = time.perf_counter() - started
    m, k = a.shape
    return 2.0 * m * k * b.shape[1] * count / elapsed


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    channel = Channel()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rlvr.hf_compat import quiet_libraries

    quiet_libraries()
    kinds = {"rlvr": rlvr_child, "ceiling": ceiling_child}
    try:
        if spec["kind"] == "trl":
            from rlvr.bench.trl_child import trl_child

            trl_child(spec, channel)
        else:
            kinds[spec["kind"]](spec, channel)
    except SystemExit:
        raise
    except BaseException as err:  # report every failure as one line; the traceback goes to the log
        traceback.print_exc()
        message = " ".join(str(err).split())[:300] or type(err).__name__
        channel.send("error", message=f"{type(err).__name__}: {message}")
        return 1
    return 0
