"""rlvr report: robust reading, overlaid plots, summary, escaping, the CLI, and a real tiny run."""

import argparse
import json
import sys

import pytest

from rlvr.errors import DataError, RlvrError
from rlvr.report import build_report
from rlvr.report.cli import add_report_command
from rlvr.report.load import load_run, load_runs
from rlvr.report.plots import plot_metrics
from rlvr.report.summary import summarize
from tests.report.conftest import write_jsonl

pytest.importorskip("matplotlib", reason="rlvr report needs matplotlib: pip install 'rlvr[report]'")


def report_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlvr")
    add_report_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


def test_truncated_and_garbage_lines_are_skipped_and_reported(make_run, capsys):
    run = make_run("crashed")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(3, "not json at all")
    lines.append('{"step": 7, "train/rew')  # the crash cut the last line short
    (run / "metrics.jsonl").write_text("\n".join(lines))
    data = load_run(run)
    assert len(data.metrics) == len(lines) - 2
    assert data.notes == ["metrics.jsonl: skipped 2 malformed lines (lines 4, 12)"]

    args = report_args(str(run))
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert out == f"{run / 'report' / 'report.html'}\n"
    assert "crashed: metrics.jsonl: skipped 2 malformed lines (lines 4, 12)" in err
    assert "metrics.jsonl: skipped 2 malformed lines (lines 4, 12)" in (run / "report" / "report.html").read_text()


def test_in_progress_run_without_evals_still_reports(make_run, tmp_path):
    run = make_run("live", finished=False)
    write_jsonl(run / "metrics.jsonl", [r for r in json_rows(run / "metrics.jsonl") if "train/reward" in r][:4])
    (run / "samples.jsonl").unlink()
    html = build_report([run], tmp_path / "out").read_text()
    summary = summarize(load_run(run))
    assert (summary["steps"], summary["planned_steps"], summary["final_eval_accuracy"]) == (4, 6, None)
    assert "in progress or stopped" in html and "no final/: the run is in progress or was stopped" in html
    assert "No rollouts logged yet" in html
    fits = json.loads((tmp_path / "out" / "fits.json").read_text())["fits"]
    assert {f["metric"] for f in fits} == {"train/accuracy", "train/response_length"}  # no eval rows yet


def test_missing_run_or_metrics_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match=f"^run directory not found: {tmp_path / 'nope'}$"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^not a run directory \(no metrics.jsonl\): .*empty$"):
        build_report([tmp_path / "empty"])


def test_two_runs_are_overlaid_one_figure_per_metric(make_run, tmp_path):
    runs = load_runs([make_run("a", steps=6), make_run("b", steps=8, tool=True)])
    plots = {p.name: p for p in plot_metrics(runs, tmp_path)}
    assert list(plots) == [
        "reward", "accuracy", "response_length", "entropy", "clip_frac", "tool", "accuracy_vs_tokens",
        "accuracy_vs_rollouts",
    ]  # no KL logged  # fmt: skip
    for name in ("reward", "accuracy", "entropy"):
        assert {s.run for s in plots[name].series} == {"a", "b"}
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    accuracy = {(s.run, s.key): s for s in plots["accuracy"].series}
    assert set(accuracy) == {(r, k) for r in "ab" for k in ("train/accuracy", "eval/accuracy")}
    assert accuracy["b", "eval/accuracy"].steps == [0, 2, 4, 6, 8]
    assert accuracy["a", "train/accuracy"].steps == [1, 2, 3, 4, 5, 6]
    assert [s.key for s in plots["reward"].series if s.run == "a"] == [
        "train/reward",
        "train/reward/boxed_format",
        "train/reward/math",
    ]
    assert [(s.run, s.key) for s in plots["tool"].series] == [("b", "train/tool_call_rate")]


def test_accuracy_against_tokens_overlays_each_runs_evals(make_run, tmp_path):
    short, long = make_run("short"), make_run("long")
    for run, lengths in ((short, [20.0, 12.0]), (long, [20.0, 30.0])):
        rows = json_rows(run / "metrics.jsonl")
        evals = [r for r in rows if "eval/accuracy" in r]
        evals[0]["eval/response_length"], evals[-1]["eval/response_length"] = lengths  # step 0 and the last
        write_jsonl(run / "metrics.jsonl", rows)
    plots = {p.name: p for p in plot_metrics(load_runs([short, long]), tmp_path)}
    series = {s.run: s for s in plots["accuracy_vs_tokens"].series}
    assert series["short"].steps == [20, 12] and series["long"].steps == [20, 30]  # x: mean tokens, per eval
    assert series["short"].values == pytest.approx([0.1, 0.4])  # y: the accuracy at those evals
    assert (tmp_path / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"


def test_accuracy_against_rollouts_counts_what_each_step_generated(make_run, tmp_path):
    fixed, adaptive = make_run("fixed", steps=4), make_run("adaptive", steps=4)
    rows = json_rows(adaptive / "metrics.jsonl")
    for row in rows:
        if "train/reward" in row:
            row["sampling/rollouts"] = 5.0 + row["step"]  # 6, 7, 8, 9: hints or a ragged allocation
    write_jsonl(adaptive / "metrics.jsonl", rows)
    plots = {p.name: p for p in plot_metrics(load_runs([fixed, adaptive]), tmp_path)}
    series = {s.run: s for s in plots["accuracy_vs_rollouts"].series}
    assert series["fixed"].steps == [0, 16, 32]  # evals at steps 0, 2, 4; 2 prompts x 4 from config.yaml
    assert series["adaptive"].steps == [0, 13, 30]  # 6 + 7, then + 8 + 9
    assert series["fixed"].values == pytest.approx([0.1, 0.2, 0.3])
    assert (tmp_path / "accuracy_vs_rollouts.png").read_bytes()[:4] == b"\x89PNG"


def test_report_escapes_model_text_and_is_self_contained(make_run):
    run = make_run("r")
    rows = json_rows(run / "samples.jsonl")
    rows[0]["completion"] = "<script>alert(1)</script>"
    rows[1]["prompt"] = '<img src=x onerror="alert(2)">'
    write_jsonl(run / "samples.jsonl", rows)
    html = build_report([run]).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert html.count("<script>") == 1  # the page's own
    assert "http://" not in html and "https://" not in html  # nothing fetched from a network
    assert html.count('src="data:image/png;base64,') >= 6


def test_summary_and_fits_of_a_finished_run(make_run, tmp_path):
    run = make_run("done", steps=6)
    summary = summarize(load_run(run))
    assert summary["final_eval_accuracy"] == (6, pytest.approx(0.4))
    assert summary["best_eval_accuracy"] == (6, pytest.approx(0.4))
    assert summary["wall_time_s"] == 6 * 2.0 + 4 * 1.0  # time/step + time/eval
    assert summary["rollout_tokens"] == 6 * 150  # 100 tokens/s x 1.5 s per step
    assert summary["eval_tokens"] == 20 * 8  # the only eval row with a response length
    args = report_args(str(run), "--out", str(tmp_path / "out"), "--fit-metrics", "train/accuracy,train/kl")
    assert args.handler(args) == 0
    fits = {(f["metric"], f["form"]): f for f in json.loads((tmp_path / "out" / "fits.json").read_text())["fits"]}
    assert fits["train/accuracy", "log"]["a"] == pytest.approx(0.1)
    assert fits["train/accuracy", "log"]["r2"] == pytest.approx(1)
    assert fits["train/kl", "log"]["note"] == "not logged by this run"
    assert (tmp_path / "out" / "fit_train_accuracy.png").is_file()


def test_missing_matplotlib_names_the_extra(make_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import fails
    with pytest.raises(RlvrError, match=r"^rlvr report needs matplotlib: pip install 'rlvr\[report\]'$"):
        build_report([make_run("r")])


def test_report_of_a_real_tiny_run(tiny_config, tmp_path):
    from rlvr.trainer import train

    overrides = ("train.steps=3", "eval.every=1", "log.samples_every=1", "checkpoint.export_final=false")
    run = train(tiny_config(*overrides), tmp_path / "run")
    html = build_report([run]).read_text()
    assert "held-out accuracy, final" in html and 'id="rollouts"' in html
    assert {p.name for p in (run / "report").glob("*.png")} >= {"reward.png", "accuracy.png", "entropy.png"}


def json_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
