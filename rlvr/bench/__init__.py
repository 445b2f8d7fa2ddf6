"""``rlvr bench``: rlvr's step against TRL's GRPOTrainer and the machine's matmul ceiling, in one run.

Contenders, each in its own child process (so a peak memory is that process's own):

- ``rlvr``: the recipe through rlvr's public loop (``trainer.setup`` + ``trainer.train_step``);
- ``trl``: TRL's GRPOTrainer set up equivalently (:mod:`rlvr.bench.trl_child`), when ``trl`` and
  ``datasets`` are installed (``pip install 'rlvr[bench]'``), in rlvr's precision (``bf16=True``
  when rlvr computes in bf16); ``trl fp32`` besides it when rlvr's is bf16;
- ``ceiling``: sustained matmul FLOP/s at the same thread count, fp32 and bf16 (fractions of the
  ceiling are of the one in rlvr's compute precision, ``train.precision``);
- with ``variants``: rlvr with each optimization switched off (:data:`VARIANTS`), and all off.

Same model, prompts, group size, lengths, seed and threads for all. Steps are interleaved: each
contender runs its step k while the others wait, then the next, so a busy neighbour on a shared
machine slows every contender alike. The median over the steps after warm-up is reported with
its min and max (:mod:`rlvr.bench.summary` derives the throughputs and ratios).

Output: a table on the console, ``OUT/bench.json`` with everything (machine, config, per-step
raw numbers, summaries, ratios) and ``OUT/logs/<contender>.log`` with each child's output.

Limits: a child that hangs hangs the bench (there is no per-step timeout); GPU runs pin TRL to
the first CUDA device; TRL is not set up for LoRA recipes (reported as unavailable).
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path

from rlvr.bench.probe import FD_ENV
from rlvr.bench.summary import key_ratios, model_flops, peak_mib, render, summarize
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.models import resolve_device
from rlvr.precision import resolve_precision

# Each of rlvr's speed and memory optimizations switched off alone, then all together.
VARIANTS: list[tuple[str, list[str]]] = [
    ("train.precision=fp32", ["train.precision=fp32"]),  # bf16 compute off (the same as the default where auto is fp32)
    ("rollout.engine=hf", ["rollout.engine=hf"]),
    ("rollout.onednn_weights=false", ["rollout.onednn_weights=false"]),
    ("train.shared_prompt=false", ["train.shared_prompt=false"]),
    ("train.packed_sequences=false", ["train.packed_sequences=false"]),
    ("train.logprob_chunk=0", ["train.logprob_chunk=0"]),
    ("train.reuse_freed_memory=false", ["train.reuse_freed_memory=false"]),
    (
        "all off",
        [
            "rollout.engine=hf",
            "rollout.onednn_weights=false",
            "train.shared_prompt=false",
            "train.packed_sequences=false",
            "train.logprob_chunk=0",
            "train.reuse_freed_memory=false",
        ],
    ),
]
PAUSE_S = 0.3  # between two contenders' steps: lets the last one's OpenMP threads stop spinning


def bench_overrides(total_steps: int, threads: int) -> list[str]:
    """What every rlvr child adds to the user's overrides: no eval, no logs or checkpoints to write."""
    return [
        f"train.steps={total_steps}", f"train.threads={threads}", "eval.before=false", "log.console=false",
        "log.tensorboard=false", "log.samples_every=0", "checkpoint.every=0",
    ]  # fmt: skip


def plan_variants(recipe: str | None, overrides: list[str], variants=None) -> list[dict]:
    """Each variant's overrides, or why it cannot run: a config that rejects a key (one of the
    knobs not there yet) is "unavailable: <message>"; one equal to the default config is skipped."""
    default = load_config(recipe, overrides).model_dump()
    planned = []
    for name, extra in VARIANTS if variants is None else variants:
        entry = {"name": name, "overrides": extra, "status": "ok", "message": ""}
        try:
            if load_config(recipe, [*overrides, *extra]).model_dump() == default:
                entry |= {"status": "skipped", "message": "same config as the default"}
        except ConfigError as err:
            entry |= {"status": "unavailable", "message": str(err)}
        planned.append(entry)
    return planned


@dataclass
class Contender:
    """The parent's handle on one child process."""

    name: str
    kind: str  # rlvr | trl | ceiling
    spec: dict
    status: str = "ok"  # ok | failed | unavailable | skipped
    message: str = ""
    info: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    done: dict = field(default_factory=dict)
    log: Path | None = None
    proc: subprocess.Popen | None = None
    reader: object = None

    def start(self, out: Path) -> None:
        (out / "logs").mkdir(parents=True, exist_ok=True)
        spec_path = out / "logs" / f"{self.slug}.spec.json"
        spec_path.write_text(json.dumps(self.spec, indent=2))
        self.log = out / "logs" / f"{self.slug}.log"
        read, write = os.pipe()
        env = {**os.environ, FD_ENV: str(write), "TOKENIZERS_PARALLELISM": "false"}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rlvr.bench", str(spec_path)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,), env=env, text=True,
            )  # fmt: skip
        os.close(write)
        self.reader = os.fdopen(read)

    @property
    def slug(self) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.name)

    @property
    def alive(self) -> bool:
        return self.status == "ok" and self.proc is not None

    def expect(self, event: str) -> dict | None:
        line = self.reader.readline()
        message = json.loads(line) if line.strip() else None
        if message is not None and message["event"] == event:
            return message
        if message is None:
            self.proc.wait()
            lines = [ln for ln in self.log.read_text().splitlines() if ln.strip()] if self.log else []
            text = f"exited with status {self.proc.returncode}" + (f": {lines[-1].strip()}" if lines else "")
        else:
            text = message.get("message", f"unexpected {message['event']!r}")
        self.fail(text)
        return None

    def command(self, word: str) -> bool:
        try:
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            self.fail("the child closed its input")
            return False

    def ready(self) -> None:
        message = self.expect("ready")
        if message:
            self.info = {k: v for k, v in message.items() if k != "event"}

    def step(self, warmup: bool) -> None:
        if self.command("step") and (message := self.expect("step")):
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # how shared the machine was
            self.steps.append({"warmup": warmup, "wall": message["wall"], "load1": load, "metrics": message["metrics"]})

    def finish(self) -> None:
        if self.command("stop") and (message := self.expect("done")):
            self.done = {k: v for k, v in message.items() if k != "event"}
            self.proc.stdin.close()
            self.proc.wait()

    def fail(self, message: str) -> None:
        self.status, self.message = "failed", message
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ceiling_shapes(
    info: dict, device: str, micro_batch: int, new_tokens: int, micro_batch_tokens: int = 0
) -> list[list[int]]:
    """Square products and the model's own: [tokens, hidden] x [hidden, intermediate] (the MLP) and
    x [hidden, vocab] (the LM head), tokens about one micro-batch of prompt + completion (at most
    ``micro_batch_tokens`` when set)."""
    hidden, inner, vocab = (info.get(k) for k in ("hidden_size", "intermediate_size", "vocab_size"))
    tokens = min(4096, micro_batch * (new_tokens + 48), micro_batch_tokens or 4096)
    tokens = max(256, tokens)
    shapes = [[2048, 2048, 2048]] + ([[8192, 8192, 8192]] if device.startswith("cuda") else [])
    if hidden and inner:
        shapes.append([tokens, hidden, inner])
    if hidden and vocab:
        shapes.append([min(tokens, 512), hidden, vocab])
    return shapes


def machine_info(threads: int) -> dict:
    import torch
    import transformers

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln), cpu)
    info = {
        "cpu": cpu, "cores": os.cpu_count(), "cores_available": available_cores(), "threads": threads,
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "cuda": torch.cuda.is_available(),
    }  # fmt: skip
    if torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def run_bench(
    recipe: str | None,
    overrides: list[str],
    out: Path,
    steps: int = 3,
    warmup: int = 2,
    trl: bool = True,
    variants: bool | list[tuple[str, list[str]]] = False,
    interleave: bool = True,
    ceiling_seconds: float = 0.5,
    console=None,
    trl_fp32: bool = True,
) -> dict:
    """Run the contenders (see the module docstring); write ``out/bench.json``; return its content.
    ``variants``: True for :data:`VARIANTS`, or a list of ``(name, overrides)``. TRL runs in rlvr's
    precision (its ``bf16=True`` when rlvr computes in bf16) and, with ``trl_fp32``, also in fp32
    when that differs (so the row at TRL's best setting is there, whichever it is)."""
    if steps < 1 or warmup < 0:
        raise ConfigError(f"bench: --steps must be >= 1 and --warmup >= 0 (got {steps} and {warmup})")
    config = load_config(recipe, overrides)  # a bad override fails here, before any child starts
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads = config.train.threads or available_cores()
    total = warmup + steps
    fixed = bench_overrides(total, threads)
    base = {"recipe": recipe, "threads": threads, "total_steps": total}
    say = console.print if console is not None else (lambda *a, **k: None)
    contenders = [Contender("rlvr", "rlvr", {**base, "kind": "rlvr", "overrides": [*overrides, *fixed]})]
    notes: list[str] = []
    if variants:
        for plan in plan_variants(recipe, overrides, None if variants is True else variants):
            spec = {**base, "kind": "rlvr", "overrides": [*overrides, *plan["overrides"], *fixed]}
            contenders.append(Contender(plan["name"], "rlvr", spec, status=plan["status"], message=plan["message"]))
    precision = resolve_precision(config.train.precision, resolve_device(config.train.device))
    if trl:
        if find_spec("trl") and find_spec("datasets"):
            trl_spec = {**base, "kind": "trl", "overrides": [*overrides, *fixed]}
            contenders.append(Contender("trl", "trl", trl_spec | {"precision": precision}))  # TRL as rlvr computes
            if trl_fp32 and precision != "fp32":
                contenders.append(Contender("trl fp32", "trl", trl_spec | {"precision": "fp32"}))
        else:
            notes.append("TRL skipped: not installed (pip install 'rlvr[bench]')")
    ceiling = Contender("ceiling", "ceiling", {**base, "kind": "ceiling", "device": config.train.device})
    say(f"[bold]bench[/bold]: {', '.join(c.name for c in contenders if c.status == 'ok')} + matmul ceiling; "
        f"{warmup} warm-up + {steps} steps, {threads} threads -> {out}")  # fmt: skip

    def prepare_ceiling() -> None:
        ceiling.spec["seconds"] = ceiling_seconds
        device = contenders[0].info.get("device", config.train.device)
        ceiling.spec["shapes"] = ceiling_shapes(
            contenders[0].info,
            device,
            config.train.micro_batch_size,
            config.rollout.max_new_tokens,
            config.train.micro_batch_tokens,
        )

    runnable = [c for c in contenders if c.status == "ok"]
    schedule = run_interleaved if interleave else run_sequential
    schedule(runnable, ceiling, prepare_ceiling, out, total, warmup, say)
    loads = [s["load1"] for c in contenders for s in c.steps if s.get("load1") is not None]
    if loads and max(loads) > available_cores() + 0.5:
        notes.append(
            f"the machine was busy (1-min load average up to {max(loads):.1f} on {available_cores()} cores): "
            "absolute times are inflated; ratios between interleaved contenders hold better"
        )
    result = assemble(config, contenders, ceiling, steps, warmup, threads, interleave, notes, load_at_start)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def run_interleaved(runnable, ceiling, prepare_ceiling, out: Path, total: int, warmup: int, say) -> None:
    """Set up every child (the ceiling's shapes need rlvr's model), then step k of each in turn."""
    first, rest = runnable[0], [*runnable[1:], ceiling]
    first.start(out)
    first.ready()
    prepare_ceiling()
    for c in rest:
        c.start(out)
    for c in rest:
        c.ready()
    for k in range(total):
        for c in [first, *rest]:
            if c.alive:
                c.step(warmup=k < warmup)
                time.sleep(PAUSE_S)
        times = [f"{c.name} {c.steps[-1]['metrics'].get('time/step', 0):.1f} s" for c in runnable if c.alive]
        say(f"step {k + 1}/{total}{' (warm-up)' if k < warmup else ''}: {', '.join(times)}")
    for c in [first, *rest]:
        if c.alive:
            c.finish()


def run_sequential(runnable, ceiling, prepare_ceiling, out: Path, total: int, warmup: int, say) -> None:
    """One child at a time: less memory at once, but no protection against a machine's drift."""
    for c in [runnable[0], ceiling, *runnable[1:]]:
        if c is ceiling:
            prepare_ceiling()
        c.start(out)
        c.ready()
        for k in range(total):
            if c.alive:
                c.step(warmup=k < warmup)
        if c.alive:
            c.finish()
        say(f"{c.name}: {c.status} {c.message}".rstrip())


def assemble(config, contenders, ceiling, steps, warmup, threads, interleave, notes, load_at_start) -> dict:
    """The JSON: machine, config, ceiling, one entry per contender (raw steps, summary), ratios."""
    shapes = ceiling.spec.get("shapes", [])
    by_dtype = {}
    for dtype in ceiling.info.get("dtypes", []):
        rounds = [s["metrics"]["flops"][dtype] for s in ceiling.steps]
        per_shape = [{"shape": shape, "best_flops": max((r[i] for r in rounds), default=None),
                      "per_round": [r[i] for r in rounds]} for i, shape in enumerate(shapes)]  # fmt: skip
        best = max((p["best_flops"] for p in per_shape if p["best_flops"]), default=None)
        by_dtype[dtype] = {"best_flops": best, "shapes": per_shape}
    # fractions of the ceiling are of the one in rlvr's compute precision
    dtype = "bfloat16" if contenders[0].info.get("precision") == "bf16" else "float32"
    ceiling_entry = {
        "status": ceiling.status, "message": ceiling.message, "dtype": dtype,
        "device": ceiling.info.get("device"), "device_name": ceiling.info.get("device_name"),
        "best_flops": by_dtype.get(dtype, {}).get("best_flops"), "by_dtype": by_dtype,
        "shape_text": ", ".join("x".join(map(str, s)) for s in shapes),
    }  # fmt: skip
    best = ceiling_entry["best_flops"]
    if ceiling.status != "ok":
        notes.append(f"matmul ceiling failed: {ceiling.message}")
    rows = []
    for c in contenders:
        params = c.info.get("params")
        memory = c.done.get("memory", {})
        row = {
            "name": c.name, "kind": c.kind, "status": c.status, "message": c.message,
            "overrides": c.spec.get("overrides", []), "info": c.info, "memory": memory, "peak_mib": peak_mib(memory),
            "steps": c.steps, "summary": summarize(c.steps, params, best) if c.status == "ok" else {},
        }  # fmt: skip
        if "trl" in c.done:
            row["trl"] = c.done["trl"]
        rows.append(row)
    result = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": sys.argv,
        "settings": {"steps": steps, "warmup": warmup, "interleaved": interleave, "pause_s": PAUSE_S},
        "machine": machine_info(threads)
        | {"device": contenders[0].info.get("device"), "load1_at_start": load_at_start},
        "config": config.model_dump(mode="json"),
        "flops_per_param_per_token": {"generated": model_flops(1, 1, "forward"), "trained": model_flops(1, 1, "train")},
        "ceiling": ceiling_entry,
        "contenders": rows,
        "notes": notes,
    }
    result["ratios"] = key_ratios(rows)
    return result


__all__ = ["VARIANTS", "plan_variants", "render", "run_bench"]
