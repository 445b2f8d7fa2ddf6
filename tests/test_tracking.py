"""Live tracking backends (rlvr.tracking): each one offline against a temp dir, read back with its own
reader; resume continuing the same backend run; a missing library naming its extra; non-finite values."""

import glob
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlvr.config import load_config, validate
from rlvr.errors import ConfigError
from rlvr.metrics import MetricsLogger
from rlvr.tracking import TRACKERS, Tracking, check_installed, flat_params, mlflow_key, numeric, table, wandb_mode

ROWS = [  # as the trainer's sample_rows writes them (rlvr.trainer), without the step MetricsLogger adds
    {
        "id": "e1",
        "prompt": "2+2?",
        "completion": "4",
        "reward": 1.0,
        "components": {"math": 1.0},
        "finish_reason": "stop",
    },
    {
        "id": "e2",
        "prompt": "3+3?",
        "completion": "7",
        "reward": 0.0,
        "components": {"math": 0.0},
        "finish_reason": "len",
    },
]
CONFIG = {
    "algo": {"policy_loss": {"name": "ppo_clip", "clip_high": 0.28}},
    "train": {"steps": 3},
    "rollout": {"stop": []},
}


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "tracking.json").read_text())


# --- pure helpers -----------------------------------------------------------------------------------


def test_table_spreads_mappings_and_fills_missing_cells():
    rows = [{"step": 1, "id": "a", "components": {"math": 1.0, "fmt": 0.2}}, {"step": 1, "id": "b", "turns": [1, 2]}]
    columns, data = table(rows)
    assert columns == ["step", "id", "components/math", "components/fmt", "turns"]
    assert data == [[1, "a", 1.0, 0.2, None], [1, "b", None, None, "[1, 2]"]]


def test_numeric_keeps_numbers_and_non_finite_drops_text():
    out = numeric({"a": 1, "b": 0.5, "c": float("nan"), "d": "inf-ish text", "e": None, "f": True})
    assert list(out) == ["a", "b", "c", "f"] and out["a"] == 1.0 and math.isnan(out["c"]) and out["f"] == 1.0


def test_mlflow_names_and_params():
    assert mlflow_key("eval/pass@8") == "eval/pass_at_8"
    assert mlflow_key("time/step") == "time/step" and mlflow_key("a:b%c") == "a_b_c"
    assert mlflow_key("train/reward/math") == "train/reward.math"  # beside train/reward in a file store
    params = flat_params({**CONFIG, "run_dir": None, "long": "x" * 600})
    assert params["algo.policy_loss.clip_high"] == "0.28" and params["algo.policy_loss.name"] == "ppo_clip"
    assert params["rollout.stop"] == "[]" and params["run_dir"] == "null"
    assert len(params["long"]) == 500 and params["long"].endswith("...")


@pytest.mark.parametrize(
    "environ, netrc_text, mode",
    [
        ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, None, "disabled"),  # the user's mode wins
        ({"WANDB_API_KEY": "k" * 40}, None, "online"),
        ({}, "machine api.wandb.ai login user password secret\n", "online"),  # what `wandb login` writes
        ({}, "machine example.com login user password secret\n", "offline"),  # another host's key
        ({"WANDB_BASE_URL": "https://wandb.corp.lan"}, "machine wandb.corp.lan login u password p\n", "online"),
        ({}, None, "offline"),  # no key anywhere: never a login prompt, never the network
    ],
)
def test_wandb_mode(tmp_path, environ, netrc_text, mode):
    path = tmp_path / "netrc"
    if netrc_text is not None:
        path.write_text(netrc_text)
        path.chmod(0o600)
    assert wandb_mode({**environ, "NETRC": str(path)}) == mode


# --- config -----------------------------------------------------------------------------------------


def test_log_backends_and_the_old_tensorboard_key():
    assert load_config(None, []).log.backends == ["tensorboard"]
    assert load_config(None, ["log.tensorboard=false"]).log.backends == []
    assert load_config(None, ["log.backends=[mlflow, wandb, mlflow]"]).log.backends == ["mlflow", "wandb"]
    assert load_config(None, ["log.backends=trackio"]).log.backends == ["trackio"]
    # a preset's old key yields to an explicit list (tests/conftest.py sets log.tensorboard=false)
    both = load_config(None, ["log.tensorboard=false", "log.backends=[tensorboard, mlflow]"]).log
    assert both.backends == ["tensorboard", "mlflow"] and both.tensorboard is True
    saved = load_config(None, []).model_dump(mode="json")  # a config.yaml written before backends existed
    saved["log"] = {"samples_every": 5, "samples_per_dump": 8, "tensorboard": False, "console": True}
    assert validate(saved).log.backends == []
    with pytest.raises(ConfigError, match=r"log\.backends\.0='wandbb'"):
        load_config(None, ["log.backends=[wandbb]"])
    with pytest.raises(ConfigError, match="log.tensorboard='yes please'"):
        load_config(None, ["log.tensorboard=yes please"])


# --- missing extras ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, module, hint",
    [
        ("wandb", "wandb", "pip install 'rlvr[wandb]'"),
        ("mlflow", "mlflow", "pip install 'rlvr[mlflow]'"),
        ("trackio", "trackio", "pip install 'rlvr[trackio]'"),
        ("tensorboard", "torch.utils.tensorboard", "pip install tensorboard"),
    ],
)
def test_missing_library_is_one_line_naming_the_extra(tmp_path, monkeypatch, backend, module, hint):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)  # `import module` now raises ImportError
    for name in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_DISABLE_TELEMETRY"):  # set by the mlflow backend; restored
        monkeypatch.setenv(name, "true")
    with pytest.raises(ConfigError) as err:
        Tracking([backend], tmp_path)
    message = str(err.value)
    assert "\n" not in message and message.startswith("log.backends: ") and message.endswith(hint)
    assert not (tmp_path / "tracking.json").exists()
    if module != "torch.utils.tensorboard":  # tensorboard: its package is `tensorboard`, checked below
        with pytest.raises(ConfigError, match=re.escape(hint) + "$"):
            check_installed(["tensorboard", backend])  # before a model loads, without importing it


def test_check_installed_finds_the_package_without_importing_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match="^log.backends: tensorboard needs tensorboard, which is not installed: pip"):
        check_installed(["tensorboard"])
    check_installed([])


def test_backend_that_fails_to_start_or_to_log(tmp_path, monkeypatch):
    class Flaky:
        where = "nowhere"
        calls = 0

        def log(self, step, metrics):
            Flaky.calls += 1
            raise OSError("connection refused\n  (retry later)")

        def log_samples(self, step, rows):
            pass

        def close(self):
            pass

    def broken(run):
        raise RuntimeError("server said no")

    monkeypatch.setitem(TRACKERS._entries, "flaky", lambda run: Flaky())
    monkeypatch.setitem(TRACKERS._entries, "broken", broken)
    with pytest.raises(ConfigError, match="^log.backends: broken could not start: server said no$"):
        Tracking(["flaky", "broken"], tmp_path)
    warnings = []
    tracking = Tracking(["flaky"], tmp_path, warn=warnings.append)
    for step in (1, 2, 3):
        tracking.log(step, {"train/reward": 0.5})
    tracking.close()
    assert Flaky.calls == 3 and len(warnings) == 1  # told once, the run goes on
    assert warnings[0].startswith("tracking: flaky failed at step 1 (connection refused (retry later))")
    assert state(tmp_path) == {"flaky": {"last_step": 3}}


# --- TensorBoard ------------------------------------------------------------------------------------


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(log_dir.iterdir()):
        events = EventAccumulator(str(path))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, pytest.approx(e.value)) for e in events.Scalars(tag))
    return out


def test_tensorboard_skips_non_finite_and_resends_nothing_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    logger = MetricsLogger(run_dir, console=False)  # the old signature: tensorboard on
    logger.log(1, {"train/reward": 0.25, "train/loss": float("nan"), "train/kl": float("inf")})
    logger.log(2, {"train/reward": 0.5, "note": "text"})
    logger.close()
    resumed = MetricsLogger(run_dir, console=False, backends=["tensorboard"], resume=True)  # from step 1's checkpoint
    resumed.log(2, {"train/reward": 0.99})  # step 2 again after the crash: TensorBoard already has it
    resumed.log(3, {"train/reward": 0.75})
    resumed.close()
    assert scalars(run_dir / "tensorboard") == {"train/reward": [(1, 0.25), (2, 0.5), (3, 0.75)]}
    assert [json.loads(line)["train/reward"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [
        0.25,
        0.5,
        0.99,
        0.75,
    ]  # fmt: skip  (the trainer truncates metrics.jsonl to the checkpoint before resuming; this test does not)


# --- MLflow -----------------------------------------------------------------------------------------


def test_mlflow_file_store_end_to_end_and_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_DISABLE_TELEMETRY"):  # restored after the test
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    run_dir = tmp_path / "grpo-run"
    tracking = Tracking(["mlflow"], run_dir, project="proj", config=CONFIG)
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true" and os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    tracking.log(0, {"eval/pass@8": 0.5})
    tracking.log_samples(1, ROWS)
    tracking.log(1, {"train/reward": 0.25, "train/reward/math": 0.5, "train/loss": float("nan"), "train/kl": math.inf})
    tracking.log(2, {"train/reward": 0.75})
    tracking.close()
    run_id = state(run_dir)["mlflow"]["run_id"]
    assert state(run_dir)["mlflow"] == {"run_id": run_id, "last_step": 2}  # no URI kept: the default one

    resumed = Tracking(["mlflow"], run_dir, project="proj", config=CONFIG, resume=True)
    resumed.log(2, {"train/reward": 0.99})  # sent before the crash: not again
    resumed.log(3, {"train/reward": 1.0})
    resumed.close()

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

    assert history("train/reward") == [(1, 0.25), (2, 0.75), (3, 1.0)]
    assert history("eval/pass_at_8") == [(0, 0.5)] and history("train/reward.math") == [(1, 0.5)]
    assert math.isnan(history("train/loss")[0][1]) and history("train/kl") == [(1, math.inf)]
    run = client.get_run(run_id)
    assert run.info.run_name == "grpo-run" and run.info.status == "FINISHED"
    assert run.data.params == {"algo.policy_loss.name": "ppo_clip", "algo.policy_loss.clip_high": "0.28",
                               "train.steps": "3", "rollout.stop": "[]"}  # fmt: skip
    experiment = client.get_experiment_by_name("proj")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]  # one run, resumed
    samples = json.loads(Path(client.download_artifacts(run_id, "samples/step-000001.json", str(tmp_path))).read_text())
    assert samples["columns"] == ["step", "id", "prompt", "completion", "reward", "components/math", "finish_reason"]
    assert samples["data"] == [[1, "e1", "2+2?", "4", 1.0, 1.0, "stop"], [1, "e2", "3+3?", "7", 0.0, 0.0, "len"]]
    config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(tmp_path))).read_text())
    assert config == CONFIG


# --- Weights & Biases -------------------------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The records of an offline ``run-<id>.wandb`` file: a LevelDB-style log (32 KiB blocks of
    ``crc32 u32, length u16, type u8`` chunks) after a 7-byte ``:W&B`` header, each a protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending, records = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(path: Path) -> list[dict]:
    rows = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def wandb_config(path: Path) -> dict:
    config = {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        config |= {item.key: json.loads(item.value_json) for item in items}
    return config


def test_wandb_offline_end_to_end_and_resume(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no login: offline
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    run_dir = tmp_path / "grpo-run"
    run_dir.mkdir()
    tracking = Tracking(["wandb"], run_dir, project="proj", config=CONFIG)
    run_id = state(run_dir)["wandb"]["id"]
    assert tracking.where["wandb"].startswith(f"offline in {run_dir / 'wandb'}")
    tracking.log(0, {"eval/pass@8": 0.5})
    tracking.log_samples(1, ROWS)
    tracking.log(1, {"train/reward": 0.25, "train/loss": float("nan"), "train/kl": float("inf")})
    tracking.log(2, {"train/reward": 0.75})
    tracking.close()
    time.sleep(1.05 - time.time() % 1)  # W&B names offline folders by the second: a resume is never this quick
    resumed = Tracking(["wandb"], run_dir, project="proj", config=CONFIG, resume=True)
    resumed.log(2, {"train/reward": 0.99})  # sent before the crash: not again
    resumed.log(3, {"train/reward": 1.0})
    resumed.close()

    first, second = sorted(glob.glob(f"{run_dir}/wandb/offline-run-*-{run_id}"))  # one id: wandb sync joins them
    rows = wandb_history(Path(first) / f"run-{run_id}.wandb")
    assert [(r["_step"], r.get("train/reward"), r.get("eval/pass@8")) for r in rows] == [
        (0, None, 0.5), (1, 0.25, None), (2, 0.75, None),
    ]  # fmt: skip
    assert math.isnan(rows[1]["train/loss"]) and rows[1]["train/kl"] == math.inf  # as NaN and Infinity
    assert rows[1]["samples/_type"] == "table-file" and rows[1]["samples/nrows"] == 2
    assert [(r["_step"], r["train/reward"]) for r in wandb_history(Path(second) / f"run-{run_id}.wandb")] == [(3, 1.0)]
    config = wandb_config(Path(first) / f"run-{run_id}.wandb")
    assert {k: v for k, v in config.items() if k != "_wandb"} == CONFIG  # _wandb: W&B's own
    (table_file,) = glob.glob(f"{first}/files/media/table/samples_*.table.json")
    samples = json.loads(Path(table_file).read_text())
    assert samples["columns"][:5] == ["step", "id", "prompt", "completion", "reward"]
    assert samples["data"][1][:5] == [1, "e2", "3+3?", "7", 0.0]


# --- trackio ----------------------------------------------------------------------------------------

TRACKIO_SCRIPT = """
import json, sys
from pathlib import Path
from rlvr.tracking import Tracking
rows, config, run_dir = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
tracking = Tracking(["trackio"], run_dir, project="proj", config=config)
tracking.log(0, {"eval/pass@8": 0.5})
tracking.log_samples(1, rows)
tracking.log(1, {"train/reward": 0.25, "train/loss": float("nan")})
tracking.log(2, {"train/reward": 0.75})
tracking.close()
resumed = Tracking(["trackio"], run_dir, project="proj", config=config, resume=True)
resumed.log(2, {"train/reward": 0.99})
resumed.log(3, {"train/reward": 1.0})
resumed.close()
from trackio.sqlite_storage import SQLiteStorage
logs = SQLiteStorage.get_logs("proj", run_dir.name)
print(json.dumps({"runs": SQLiteStorage.get_runs("proj"), "logs": [{k: v for k, v in log.items() if k != "timestamp"}
      for log in logs], "config": SQLiteStorage.get_run_config("proj", run_dir.name)}))
"""


def test_trackio_local_store_end_to_end_and_resume(tmp_path):
    """In a child process: trackio reads TRACKIO_DIR once, at import, so a store per test needs a fresh one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKIO_")} | {
        "TRACKIO_DIR": str(tmp_path / "store")
    }
    run_dir = tmp_path / "grpo-run"
    run_dir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", TRACKIO_SCRIPT, json.dumps(ROWS), json.dumps(CONFIG), str(run_dir)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.splitlines()
    assert printed == []  # trackio's banners kept off the console
    out = json.loads(last)
    assert out["runs"] == ["grpo-run"]  # resumed by name, not a second run
    steps = [
        (log["step"], log.get("train/reward"), log.get("eval/pass@8")) for log in out["logs"] if "samples" not in log
    ]
    assert steps == [(0, None, 0.5), (1, 0.25, None), (2, 0.75, None), (3, 1.0, None)]
    (loss,) = [log["train/loss"] for log in out["logs"] if "train/loss" in log]
    assert math.isnan(loss)
    (samples,) = [log["samples"] for log in out["logs"] if "samples" in log]
    assert samples["_type"] == "trackio.table"
    assert samples["_value"][0] == {"step": 1, **{k: v for k, v in ROWS[0].items() if k != "components"},
                                    "components/math": 1.0}  # fmt: skip
    assert {k: v for k, v in out["config"].items() if not k.startswith("_")} == CONFIG
    assert (tmp_path / "store" / "proj.db").exists()


# --- a tiny run -------------------------------------------------------------------------------------


def test_tiny_train_with_tensorboard_and_mlflow_resumed(tiny_config, tmp_path, monkeypatch):
    """rlvr train with log.backends=[tensorboard, mlflow], killed after step 1 and resumed: one MLflow run
    whose curves are metrics.jsonl's, in TensorBoard too."""
    from mlflow.tracking import MlflowClient

    from rlvr.metrics import read_metrics
    from rlvr.trainer import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    overrides = ("train.steps=2", "checkpoint.every=1", "checkpoint.export_final=false", "log.samples_every=2",
                 "log.backends=[tensorboard, mlflow]")  # fmt: skip
    run_dir = train(tiny_config(*overrides), tmp_path / "run", stop_after=1)
    run_id = state(run_dir)["mlflow"]["run_id"]
    train(tiny_config(*overrides), run_dir, resume=True)
    assert state(run_dir)["mlflow"] == {"run_id": run_id, "last_step": 2}
    rows = read_metrics(run_dir / "metrics.jsonl")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("rlvr").experiment_id])
    assert run.info.run_id == run_id and run.info.run_name == "run" and run.data.params["model.name"] == "tiny-random"
    assert set(run.data.metrics) == {mlflow_key(k) for row in rows for k in row if k != "step"}  # none lost
    rewards = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/reward")]
    assert rewards == [(r["step"], pytest.approx(r["train/reward"])) for r in rows if "train/reward" in r]
    assert [step for step, _ in rewards] == [1, 2]
    accuracy = [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/accuracy")]
    assert accuracy == [(r["step"], pytest.approx(r["eval/accuracy"])) for r in rows if "eval/accuracy" in r]
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == ["samples/step-000002.json"]
    assert scalars(run_dir / "tensorboard")["train/reward"] == rewards
