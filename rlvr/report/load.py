"""Reading a run directory for the report, robustly.

A run may still be training (no ``final/``, no eval rows yet) or may have crashed mid-write,
leaving a cut last line in a JSONL file. Reading never fails on a bad line: it is skipped and
a note says which file and line (``metrics.jsonl: skipped 1 malformed line (line 57)``), so the
report shows what it read and what it left out. Only a missing run directory or a missing
``metrics.jsonl`` is an error, since then there is nothing to report.

Limits: files are read whole into memory (a run's JSONL files are small: one row per step);
rollout rows beyond ``max_samples`` per run are dropped (the latest are kept) with a note.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import DataError

MAX_SAMPLES = 2000  # rollout rows per run kept for the browser; the HTML grows ~1 kB per row


@dataclass
class RunData:
    """One run as the report sees it: rows as written, plus notes on what was skipped."""

    path: Path
    name: str
    metrics: list[dict[str, Any]]  # rows of metrics.jsonl, each with an int "step"
    samples: list[dict[str, Any]]  # rows of samples.jsonl
    eval_samples: list[dict[str, Any]]  # rows of eval_samples.jsonl
    config_text: str  # config.yaml as written ("" when absent)
    config: dict[str, Any]  # config.yaml parsed ({} when absent or unreadable)
    finished: bool  # final/ exists
    notes: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        return {k for row in self.metrics for k in row if k != "step"}

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of ``key`` over the rows holding a finite number for it."""
        steps, values = [], []
        for row in self.metrics:
            value = as_float(row.get(key))
            if value is not None and math.isfinite(value):
                steps.append(row["step"])
                values.append(value)
        return steps, values


def as_float(value: Any) -> float | None:
    """A number, or a non-finite float written as a string ("nan", "inf"); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def read_jsonl(path: Path, notes: list[str], need_step: bool = True) -> list[dict[str, Any]]:
    """Rows of a JSONL file; lines that are not a JSON object (with an int ``step``) are skipped
    and counted in ``notes``. A missing file reads as no rows."""
    if not path.is_file():
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or (need_step and not _is_step(row.get("step"))):
            bad.append(number)
            continue
        rows.append(row)
    if bad:
        shown = ", ".join(str(n) for n in bad[:10]) + (", ..." if len(bad) > 10 else "")
        plural = "s" if len(bad) > 1 else ""
        notes.append(f"{path.name}: skipped {len(bad)} malformed line{plural} (line{plural} {shown})")
    return rows


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_run(run_dir: Path | str, max_samples: int = MAX_SAMPLES) -> RunData:
    """Read one run directory; :class:`DataError` if it or its metrics.jsonl is missing."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run directory not found: {path}")
    if not (path / "metrics.jsonl").is_file():
        raise DataError(f"not a run directory (no metrics.jsonl): {path}")
    notes: list[str] = []
    metrics = read_jsonl(path / "metrics.jsonl", notes)
    if not metrics:
        notes.append("metrics.jsonl: no rows yet")
    samples = read_jsonl(path / "samples.jsonl", notes)
    if len(samples) > max_samples:
        notes.append(f"samples.jsonl: showing the last {max_samples} of {len(samples)} rollouts")
        samples = samples[-max_samples:]
    eval_samples = read_jsonl(path / "eval_samples.jsonl", notes)
    config_text, config = _read_config(path / "config.yaml", notes)
    finished = (path / "final").is_dir()
    if not finished:
        notes.append("no final/: the run is in progress or was stopped")
    return RunData(path, path.resolve().name, metrics, samples, eval_samples, config_text, config, finished, notes)


def _read_config(path: Path, notes: list[str]) -> tuple[str, dict[str, Any]]:
    if not path.is_file():
        notes.append("config.yaml: not found")
        return "", {}
    text = path.read_text(errors="replace")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as err:
        notes.append(f"config.yaml: unreadable ({str(err).splitlines()[0]})")
        return text, {}
    return text, parsed if isinstance(parsed, dict) else {}


def load_runs(run_dirs: list[Path | str]) -> list[RunData]:
    """Load each run; two directories with the same name get their parent prepended as label."""
    runs = [load_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"
    return runs
