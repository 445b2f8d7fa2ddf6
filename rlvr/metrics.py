"""Where a run's numbers go: metrics.jsonl, samples.jsonl, the console, and the live trackers of
``log.backends`` (TensorBoard, W&B, MLflow, trackio: rlvr.tracking).

``metrics.jsonl`` holds one JSON object per line: ``{"step": 3, "train/reward": 0.41, ...}``
(train rows) and ``{"step": 10, "eval/accuracy": 0.6, ...}`` (eval rows). Lines are flushed
as they are written, so a plot of a live run is current; on resume, rows past the
checkpoint's step are dropped so the file reads as one uninterrupted run.
"""

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rlvr.tracking import Tracking

if TYPE_CHECKING:
    from rlvr.config import RunConfig

CONSOLE_KEYS = {  # metric -> short label on the progress line
    "train/reward": "reward",
    "train/accuracy": "acc",
    "train/response_length": "len",
    "train/entropy": "ent",
    "sft/nll": "sft nll",
    "time/step": "s/step",
}


class MetricsLogger:
    """The run's JSONL files and console, and its trackers (rlvr.tracking.Tracking).

    ``backends`` names the trackers; without it, ``tensorboard`` says whether TensorBoard is the one
    (the signature before trackers existed). ``run_config`` is logged to each backend; ``resume``
    continues the backend runs recorded in the run directory's tracking.json."""

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = True,
        console: bool = True,
        *,
        backends: Iterable[str] | None = None,
        project: str = "rlvr",
        run_config: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.run_dir = run_dir
        self.console = Console(stderr=True, quiet=not console)
        names = list(backends) if backends is not None else (["tensorboard"] if tensorboard else [])
        self.tracking = Tracking(names, run_dir, project=project, config=run_config, resume=resume, warn=self._warn)
        self.metrics_path = run_dir / "metrics.jsonl"
        self.samples_path = run_dir / "samples.jsonl"
        self._metrics = self.metrics_path.open("a")
        self._samples = self.samples_path.open("a")
        self._progress: Progress | None = None
        self._task = None
        self._total = self._done = 0
        for name, where in self.tracking.where.items():
            if name != "tensorboard":  # always <run_dir>/tensorboard, as before trackers
                self.console.print(f"tracking: {name} {where}", soft_wrap=True)

    @classmethod
    def for_run(cls, config: "RunConfig", run_dir: Path, resume: bool = False) -> "MetricsLogger":
        """The logger ``config.log`` asks for, with the resolved config sent to each tracker."""
        log = config.log
        return cls(
            run_dir, console=log.console, backends=log.backends, project=log.project,
            run_config=config.model_dump(mode="json"), resume=resume,
        )  # fmt: skip

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        self.tracking.log(step, metrics)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        for sample in samples:
            self._samples.write(json.dumps({"step": step, **sample}) + "\n")
        self._samples.flush()
        self.tracking.log_samples(step, samples)

    def start_progress(self, total: int, done: int) -> None:
        """A live bar with ETA on a terminal; one plain line per step in a log file or CI."""
        self._total, self._done = total, done
        if not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[figures]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=done, figures="")

    def advance(self, metrics: dict[str, float]) -> None:
        figures = "  ".join(f"{label} {metrics[key]:.3g}" for key, label in CONSOLE_KEYS.items() if key in metrics)
        self._done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, figures=figures)
        else:
            self.console.print(f"step {self._done}/{self._total}  {figures}", soft_wrap=True)

    def print(self, message: str) -> None:
        self.console.print(message)

    def _warn(self, message: str) -> None:
        self.console.print(message, soft_wrap=True, markup=False, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._metrics.close()
        self._samples.close()
        self.tracking.close()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def truncate_after(path: Path, step: int) -> None:
    """Drop JSONL rows whose step is beyond ``step`` (and a last line cut by a crash)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
