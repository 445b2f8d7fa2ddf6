"""Live tracking backends: a run's numbers also sent to TensorBoard, Weights & Biases, MLflow or trackio.

``log.backends`` names them (default ``[tensorboard]``). ``metrics.jsonl`` and ``samples.jsonl``
(rlvr.metrics) are written whatever the choice and stay the record of the run: the report, the sweep
and exact resume read them, never a backend. A backend is a factory in :data:`TRACKERS`, one
signature ``factory(run: TrackedRun) -> Tracker``; its library is imported only when it is chosen, and
a missing one is a one-line :class:`ConfigError` naming the extra to install.

Offline unless told otherwise (docs/tracking.md): W&B runs offline into ``<run_dir>/wandb`` unless
``WANDB_MODE`` says otherwise or an API key is configured; MLflow writes a file store in
``<run_dir>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set; trackio writes its local SQLite store
(``TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``): trackio reads that directory once, at
import, so rlvr cannot point it into each run directory.

Resume: ``<run_dir>/tracking.json`` keeps each backend's run id and the last step it was sent. A
resumed run continues the same backend run and does not send again the steps it already holds
(the checkpoint is older than the crash, so the rows between the two come twice; W&B would drop
them with a warning, the others would draw the curve twice). Those rows are the same numbers
up to timings (exact resume), and metrics.jsonl keeps the resumed ones.

Limits: a backend that fails while the run goes on (a tracking server down) is reported once on the
console and skipped, not retried: the run does not stop for its side channel. Eval completions
(eval_samples.jsonl) are not sent.
"""

import contextlib
import importlib
import importlib.util
import io
import json
import math
import netrc
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from rlvr.errors import ConfigError, RlvrError
from rlvr.registry import Registry

STATE_FILE = "tracking.json"


@dataclass
class TrackedRun:
    """What a backend's factory gets: the run, and the backend's own entry of tracking.json."""

    run_dir: Path
    project: str  # log.project: the W&B project, MLflow experiment, trackio project
    config: dict[str, Any]  # the resolved run config, as config.yaml holds it
    state: dict[str, Any] = field(default_factory=dict)  # empty on a fresh run; the factory records its run id

    @property
    def name(self) -> str:
        return self.run_dir.name


class Tracker(Protocol):
    where: str  # one console line: where the numbers go and how to look at them

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


TRACKERS: Registry[Callable[[TrackedRun], Tracker]] = Registry("tracking backend")


class Tracking:
    """The chosen backends of one run, fed together; persists their ids and last steps in tracking.json.

    ``resume`` continues the backend runs that tracking.json names and skips every step at or below
    the last one each backend was sent; a fresh run starts new backend runs (a stale tracking.json is
    replaced). ``warn`` prints one line (the run's console)."""

    def __init__(
        self,
        names: Iterable[str],
        run_dir: Path,
        *,
        project: str = "rlvr",
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.path = Path(run_dir) / STATE_FILE
        self.warn = warn
        saved = read_state(self.path) if resume else {}
        self.state: dict[str, dict[str, Any]] = {}
        self.trackers: list[tuple[str, Tracker]] = []
        self._failed: set[str] = set()
        names = list(dict.fromkeys(names))
        if names:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # W&B warns of a missing folder, trackio needs it
        try:
            for name in names:
                factory = TRACKERS.get(name)
                entry = self.state[name] = dict(saved[name]) if isinstance(saved.get(name), dict) else {}
                run = TrackedRun(Path(run_dir), project, dict(config or {}), entry)
                try:
                    self.trackers.append((name, factory(run)))
                except RlvrError:
                    raise
                except Exception as err:
                    raise ConfigError(f"log.backends: {name} could not start: {one_line(err)}") from err
        except BaseException:
            self.close()
            raise
        self._sent_before = {name: entry.get("last_step", -1) for name, entry in self.state.items()}
        if self.trackers:
            self._save()

    @property
    def where(self) -> dict[str, str]:
        """Backend name -> where its numbers go."""
        return {name: tracker.where for name, tracker in self.trackers}

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = numeric(metrics)
        if values:
            self._each("log", step, values)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._each("log_samples", step, [{"step": step, **row} for row in rows])

    def close(self) -> None:
        for name, tracker in self.trackers:
            try:
                tracker.close()
            except Exception as err:
                self.warn(f"tracking: {name} did not close cleanly: {one_line(err)}")
        if self.trackers:
            self._save()
        self.trackers = []

    def _each(self, method: str, step: int, payload: Any) -> None:
        advanced = False
        for name, tracker in self.trackers:
            if step <= self._sent_before[name]:
                continue  # sent before the crash this run resumes from
            try:
                getattr(tracker, method)(step, payload)
            except Exception as err:
                if name not in self._failed:
                    self._failed.add(name)
                    self.warn(
                        f"tracking: {name} failed at step {step} ({one_line(err)}); the run goes on, metrics.jsonl"
                        f" has every row, and later {name} failures are not shown"
                    )
            entry = self.state[name]
            if step > entry.get("last_step", -1):
                entry["last_step"], advanced = step, True
        if advanced:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        tmp.replace(self.path)


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """tracking.json, or nothing if there is none (a run started before tracking existed, or cut off)."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


REQUIRES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def install_hint(backend: str) -> str:
    return "pip install tensorboard" if backend == "tensorboard" else f"pip install 'rlvr[{backend}]'"


def check_installed(names: Iterable[str]) -> None:
    """Fail now, before a model loads, if a chosen backend's library is missing: a ConfigError naming
    the extra. Finds the package without importing it (a backend imports its library when it starts)."""
    for name in names:
        module = REQUIRES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(f"log.backends: {name} needs {module}, which is not installed: {install_hint(name)}")


def requires(module: str, extra: str, install: str | None = None) -> Any:
    """Import ``module`` for the ``extra`` backend, or a one-line ConfigError with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        command = install or install_hint(extra)
        raise ConfigError(f"log.backends: {extra} needs {module}, which does not import ({err}): {command}") from None


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers among ``metrics`` as floats (non-finite ones kept: each backend decides); text and
    None are left out, as no backend plots them."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, str) or value is None:
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Sample rows as one table: columns in first-seen order, a nested mapping spread into
    ``key/sub`` columns (``components/math``), lists and other values as JSON text, a missing cell None."""
    flat_rows = []
    for row in rows:
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, Mapping):
                flat |= {f"{key}/{sub}": _cell(v) for sub, v in value.items()}
            else:
                flat[key] = _cell(value)
        flat_rows.append(flat)
    columns = list(dict.fromkeys(key for flat in flat_rows for key in flat))
    return columns, [[flat.get(c) for c in columns] for flat in flat_rows]


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- TensorBoard ------------------------------------------------------------------------------------


class TensorBoardTracker:
    """Scalars as TensorBoard events (torch's SummaryWriter). Non-finite values are left out (TensorBoard
    draws them as gaps or spikes that hide the rest); samples stay in samples.jsonl (no table view)."""

    def __init__(self, log_dir: Path) -> None:
        writer = requires("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer = writer(log_dir=str(log_dir))
        self.where = f"{log_dir} (tensorboard --logdir {log_dir.parent.parent})"

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        self.writer.close()


@TRACKERS.register("tensorboard")
def tensorboard_backend(run: TrackedRun) -> Tracker:
    """TensorBoard event files in ``<run_dir>/tensorboard``; ``tensorboard --logdir runs`` shows all runs."""
    return TensorBoardTracker(run.run_dir / "tensorboard")


# --- Weights & Biases -------------------------------------------------------------------------------


def wandb_mode(environ: Mapping[str, str] = os.environ) -> str:
    """``WANDB_MODE`` if set (online, offline, disabled); else online when an API key is configured
    (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, or a netrc entry for the W&B host, which
    ``wandb login`` writes), else offline: a run never stops to prompt for a login nor waits on
    the network unasked. Limits: a key kept by other means (a credentials helper) is not seen."""
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "online"
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = environ.get("NETRC") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        entry = None
    return "online" if entry and entry[2] else "offline"


class WandbTracker:
    """One W&B run per rlvr run, its id in tracking.json so that a resumed run appends to it. W&B's own
    step is rlvr's step. Console output is silenced (``WANDB_SILENT``, ``WANDB_CONSOLE`` override);
    non-finite values go as they are (W&B stores NaN and Infinity)."""

    def __init__(self, run: TrackedRun) -> None:
        self.wandb = requires("wandb", "wandb")
        settings: dict[str, Any] = {}
        if "WANDB_SILENT" not in os.environ:
            settings["silent"] = True
        if "WANDB_CONSOLE" not in os.environ:
            settings["console"] = "off"  # rlvr's console stays rlvr's; W&B would wrap stdout and stderr
        mode = wandb_mode()
        previous = run.state.get("id")
        self.run = self.wandb.init(
            project=run.project,
            name=run.name,
            id=previous,
            resume="allow" if previous else None,
            dir=str(run.run_dir),
            mode=mode,
            settings=self.wandb.Settings(**settings),
        )
        self.run.config.update(run.config, allow_val_change=True)  # a resumed run may change a key
        run.state["id"] = self.run.id
        wandb_dir = run.run_dir / "wandb"
        if mode == "offline":
            self.where = f"offline in {wandb_dir} (upload: wandb sync {wandb_dir}/offline-run-*-{self.run.id})"
        elif mode == "disabled":
            self.where = "disabled (WANDB_MODE=disabled): nothing is recorded"
        else:
            self.where = getattr(self.run, "url", None) or f"{mode} ({wandb_dir})"

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns, data = table(rows)
        self.run.log({"samples": self.wandb.Table(columns=columns, data=data, allow_mixed_types=True)}, step=step)

    def close(self) -> None:
        self.run.finish()


@TRACKERS.register("wandb")
def wandb_backend(run: TrackedRun) -> Tracker:
    """Weights & Biases (https://wandb.ai): offline files in ``<run_dir>/wandb`` unless online (:func:`wandb_mode`)."""
    return WandbTracker(run)


# --- MLflow -----------------------------------------------------------------------------------------

MLFLOW_PARAM_CHARS = 500  # the value limit of older MLflow servers (6000 since 2.x); config.json has it all
MLFLOW_BATCH = 100  # params per log_batch call (MLflow's limit; metrics allow 1000)


def mlflow_key(key: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . / space``): ``eval/pass@8`` -> ``eval/pass_at_8``.
    Only the first ``/`` stays one (``train/reward/math`` -> ``train/reward.math``): MLflow's file store
    makes each ``/`` a folder, and ``train/reward`` cannot be both a file and the folder of ``math``."""
    section, slash, rest = re.sub(r"[^/\w.\- ]", "_", key.replace("@", "_at_")).partition("/")
    return (section + slash + rest.replace("/", "."))[:250]


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as dotted MLflow params (``algo.policy_loss.clip_high``); lists and None as JSON text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flat_params(value, f"{name}.")
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[name] = text if len(text) <= MLFLOW_PARAM_CHARS else text[: MLFLOW_PARAM_CHARS - 3] + "..."
    return out


class MlflowTracker:
    """One MLflow run per rlvr run in the experiment ``log.project``, its id in tracking.json. The config
    goes as params (flattened, fresh runs only: MLflow params cannot change) and as config.json; sample
    dumps as ``samples/step-NNNNNN.json`` tables (``{"columns", "data"}``, what ``log_table`` writes)."""

    def __init__(self, run: TrackedRun) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read at import: no usage pings unasked
        default = (run.run_dir / "mlruns").resolve().as_uri()
        if run.state.get("run_id"):
            uri = run.state.get("tracking_uri") or default
        else:
            uri = os.environ.get("MLFLOW_TRACKING_URI") or default
        if uri == default:
            # MLflow 3 keeps the file store in maintenance and refuses it unless allowed; it is the
            # store that needs no server and no SQL extras, inside the run directory.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.entities = requires("mlflow.entities", "mlflow")
        client_module = requires("mlflow.tracking", "mlflow")
        self.client = client_module.MlflowClient(tracking_uri=uri)
        self.run_id = self._continue(run.state.get("run_id")) or self._start(run)
        run.state["run_id"] = self.run_id
        if uri != default:
            run.state["tracking_uri"] = uri
        self.client.log_dict(self.run_id, run.config, "config.json")
        self.where = f"{uri} (experiment {run.project}, run {self.run_id})"

    def _continue(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            self.client.get_run(run_id)
        except Exception:
            return None  # that store no longer has it: a new run
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _start(self, run: TrackedRun) -> str:
        experiment = self.client.get_experiment_by_name(run.project)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(run.project)
            except Exception:  # a parallel run created it first
                experiment_id = self.client.get_experiment_by_name(run.project).experiment_id
        else:
            experiment_id = experiment.experiment_id
        created = self.client.create_run(experiment_id, run_name=run.name, tags={"rlvr.run_dir": str(run.run_dir)})
        params = [self.entities.Param(k, v) for k, v in flat_params(run.config).items()]
        for i in range(0, len(params), MLFLOW_BATCH):
            self.client.log_batch(created.info.run_id, params=params[i : i + MLFLOW_BATCH])
        return created.info.run_id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        rows = [self.entities.Metric(mlflow_key(k), v, now, step) for k, v in metrics.items()]
        for i in range(0, len(rows), 1000):
            self.client.log_batch(self.run_id, metrics=rows[i : i + 1000])

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns, data = table(rows)
        self.client.log_dict(self.run_id, {"columns": columns, "data": data}, f"samples/step-{step:06d}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


@TRACKERS.register("mlflow")
def mlflow_backend(run: TrackedRun) -> Tracker:
    """MLflow (https://mlflow.org): a file store in ``<run_dir>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set."""
    return MlflowTracker(run)


# --- trackio ----------------------------------------------------------------------------------------


class TrackioTracker:
    """One trackio run per rlvr run, named after the run directory; a resumed run continues it by name.
    trackio's banners and dashboard hints (printed on stdout) are kept off the console; its warnings
    are not. Non-finite values go as they are (stored as NaN and Infinity). Limits: trackio cuts table
    strings past 250 characters; it keeps one current run per process."""

    def __init__(self, run: TrackedRun) -> None:
        self.trackio = requires("trackio", "trackio")
        previous = run.state.get("name")
        name = run.state["name"] = previous or run.name
        with contextlib.redirect_stdout(io.StringIO()):
            self.run = self.trackio.init(
                project=run.project, name=name, config=run.config, resume="allow" if previous else "never"
            )
        store = getattr(importlib.import_module("trackio.utils"), "TRACKIO_DIR", "trackio's local store")
        self.where = f"project {run.project} in {store} (trackio show --project {run.project})"

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns, data = table(rows)
        self.run.log({"samples": self.trackio.Table(columns=columns, data=data)}, step=step)

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.trackio.finish()


@TRACKERS.register("trackio")
def trackio_backend(run: TrackedRun) -> Tracker:
    """trackio (https://github.com/gradio-app/trackio): a local SQLite store, ``trackio show`` to browse it."""
    return TrackioTracker(run)
