"""``rlvr bench --scaling``: the grid of points, the memory guard, the table and plot (the benches
themselves are ``run_bench``, tested in test_bench.py; here a stand-in returns known numbers)."""

import json

import pytest

from rlvr.bench import scaling


def test_points_vary_one_axis_at_a_time_from_a_shared_base():
    pts = scaling.points(["length", "group"])
    assert pts[0] == ("base", "-", scaling.BASE)
    assert [(a, v) for a, v, _ in pts[1:]] == [("length", 128), ("length", 512), ("group", 16), ("group", 32)]
    _, _, overrides = pts[2]
    assert "rollout.max_new_tokens=512" in overrides and "rollout.max_new_tokens=48" not in overrides
    assert "rollout.group_size=8" in overrides and "model.name=random:smollm2-135m" in overrides


def fake_result(step: float, trl_step: float) -> dict:
    def contender(name, s):
        return {"name": name, "kind": name, "status": "ok", "message": "",
                "summary": {"step_s": {"median": s}, "gen_tok_s": {"median": 100 / s}}}  # fmt: skip

    return {"contenders": [contender("rlvr", step), contender("trl", trl_step)],
            "ratios": {"trl_over_rlvr_step_s_per_generated_token": trl_step / step}}  # fmt: skip


def test_run_scaling_collects_rows_skips_what_cannot_fit_and_plots(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import rlvr.bench

    calls = []

    def fake_bench(recipe, overrides, out, **kwargs):
        calls.append(overrides)
        tokens = int(next(o.split("=")[1] for o in overrides if o.startswith("rollout.max_new_tokens=")))
        return fake_result(tokens / 10, tokens / 2)

    monkeypatch.setattr(rlvr.bench, "run_bench", fake_bench)
    monkeypatch.setattr(scaling, "available_memory_bytes", lambda: 20 * 2**30)  # 360M x 2 fits, 1.7B does not
    result = scaling.run_scaling(None, ["train.threads=1"], tmp_path, ["length", "model"])
    assert len(calls) == 4  # base, length 128 and 512, model 360M; 1.7B skipped
    assert all(c[0] == "train.threads=1" for c in calls)
    saved = json.loads((tmp_path / "scaling.json").read_text())
    skipped = [r for r in saved["rows"] if r["status"] == "skipped"]
    assert [r["value"] for r in skipped] == ["random:smollm2-1.7b"] and "GiB" in skipped[0]["message"]
    length = scaling.axis_rows(saved, "length")
    assert [r["value"] for r in length] == [48, 128, 512]
    assert [r["rlvr_step_s"] for r in length] == pytest.approx([4.8, 12.8, 51.2])
    assert all(r["trl_over_rlvr_step"] == pytest.approx(5.0) for r in length)
    assert result["plot"] and (tmp_path / "scaling.png").stat().st_size > 1000


def test_the_1_7b_shape_needs_more_than_a_24_gib_machine():
    assert scaling.needed_bytes("random:smollm2-1.7b", 1) > 24 * 2**30
    assert scaling.needed_bytes("random:smollm2-360m", 2) < 12 * 2**30


def test_parameter_counts_are_those_of_the_built_models():
    from rlvr.models import random_smollm2, random_smollm2_params

    model, _ = random_smollm2("random:smollm2-135m")
    assert random_smollm2_params("random:smollm2-135m") == sum(p.numel() for p in model.parameters())
