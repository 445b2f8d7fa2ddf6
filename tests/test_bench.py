"""``rlvr bench``: one tiny run end to end, its derived numbers, config errors, variants, FLOP counts."""

import json

import pytest

from rlvr.bench import plan_variants, run_bench
from rlvr.bench.summary import key_ratios, model_flops, per_step_numbers, summarize
from rlvr.cli import main
from tests.conftest import TINY_OVERRIDES

# The children are fresh processes: the conftest's toy reward is not registered there, so use built-in ones.
BENCH_OVERRIDES = [*TINY_OVERRIDES, "rewards=[{name: math}, {name: boxed_format, weight: 0.2}]", "eval.verifier=math"]


def test_tiny_bench_writes_consistent_json(tmp_path, capsys):
    out = tmp_path / "bench"
    overrides = [*BENCH_OVERRIDES, "train.threads=1"]
    variants = [("typo", ["train.no_such_knob=0"])]
    result = run_bench(None, overrides, out, steps=1, warmup=1, trl=False, variants=variants, ceiling_seconds=0.05)
    saved = json.loads((out / "bench.json").read_text())
    assert saved["ratios"] == json.loads(json.dumps(result["ratios"]))
    assert {"cpu", "cores", "threads", "torch", "device"} <= saved["machine"].keys()
    assert saved["machine"]["threads"] == 1 and saved["config"]["model"]["name"] == "tiny-random"

    rlvr, typo = saved["contenders"]
    assert rlvr["name"] == "rlvr" and rlvr["status"] == "ok", rlvr["message"]
    assert typo["status"] == "unavailable" and "no_such_knob" in typo["message"]
    assert [s["warmup"] for s in rlvr["steps"]] == [True, False]
    raw = rlvr["steps"][1]["metrics"]
    assert raw["time/step"] > 0 and raw["time/rollout"] > 0 and raw["time/update"] > 0
    assert raw["tokens/generated"] > 0 and raw["tokens/trained"] > 0 and raw["tokens/forwarded"] > raw["tokens/trained"]
    assert rlvr["peak_mib"] > 0 and rlvr["info"]["params"] > 500_000

    ceiling = saved["ceiling"]
    assert ceiling["status"] == "ok" and ceiling["dtype"] == "float32" and ceiling["best_flops"] > 0
    assert set(ceiling["by_dtype"]) == {"float32", "bfloat16"}  # both ceilings, the fp32 one for an fp32 run
    assert ceiling["by_dtype"]["bfloat16"]["best_flops"] > 0
    assert ceiling["best_flops"] == ceiling["by_dtype"]["float32"]["best_flops"]
    assert rlvr["info"]["precision"] == "fp32"
    summary, params = rlvr["summary"], rlvr["info"]["params"]
    assert summary["step_s"]["median"] == raw["time/step"]  # one measured step: median = min = max
    assert summary["update_tok_s"]["median"] == pytest.approx(raw["tokens/trained"] / raw["time/update"])
    assert summary["gen_flops"]["median"] == pytest.approx(2 * params * raw["tokens/generated"] / raw["time/rollout"])
    update_flops = 6 * params * raw["tokens/forwarded"] / raw["time/update"]
    assert summary["ceiling_frac"] == pytest.approx(update_flops / ceiling["best_flops"])
    assert saved["ratios"]["rlvr_update_ceiling_frac"] == pytest.approx(summary["ceiling_frac"])
    assert (out / "logs" / "rlvr.log").is_file()


def test_bad_override_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "train.stepz=3", "--no-trl", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error:") and "unknown key 'train.stepz'" in err and err.count("\n") == 1
    assert not out.exists()


def test_variants_report_unknown_keys_and_skip_the_default():
    planned = plan_variants(
        None,
        BENCH_OVERRIDES,
        [("typo", ["train.no_such_knob=0"]), ("same", []), ("chunk", ["train.logprob_chunk=7"])],
    )
    typo, same, chunk = planned
    assert typo["status"] == "unavailable" and "unknown key 'train.no_such_knob'" in typo["message"]
    assert same["status"] == "skipped"
    assert chunk["status"] == "ok" and chunk["overrides"] == ["train.logprob_chunk=7"]


def test_flop_counts_by_hand():
    # SmolLM2-135M: 134,515,008 parameters (tied embedding once); 1,000 tokens.
    assert model_flops(134_515_008, 1000) == 807_090_048_000  # 6 N T
    assert model_flops(134_515_008, 1000, "forward") == 269_030_016_000  # 2 N T
    raw = {"time/step": 5.0, "time/rollout": 2.0, "time/update": 4.0, "tokens/generated": 100.0}
    raw |= {"tokens/trained": 80.0, "tokens/forwarded": 200.0}
    numbers = per_step_numbers(raw, params=10)
    assert numbers["gen_tok_s"] == 50.0 and numbers["update_tok_s"] == 20.0
    assert numbers["gen_flops"] == 1000.0  # 2 x 10 x 100 / 2
    assert numbers["update_flops"] == 3000.0  # 6 x 10 x 200 / 4
    assert numbers["useful_update_flops"] == 1200.0  # 6 x 10 x 80 / 4
    steps = [{"warmup": True, "metrics": raw | {"time/update": 100.0}}, {"warmup": False, "metrics": raw}]
    assert summarize(steps, 10, ceiling=6000.0)["ceiling_frac"] == 0.5  # the warm-up step is left out


def test_key_ratios_compare_rlvr_with_trl_and_variants():
    def row(name, step, peak, kind="rlvr", tokens=100.0):
        summary = {key: {"median": step, "min": step, "max": step} for key in ("step_s", "rollout_s", "update_s")}
        steps = [
            {"warmup": k == 0, "metrics": {"time/step": step * (k + 1), "tokens/generated": tokens}} for k in range(3)
        ]
        return {"name": name, "kind": kind, "status": "ok", "summary": summary, "peak_mib": peak, "steps": steps}

    rows = [
        row("rlvr", 10.0, 900.0),
        row("train.logprob_chunk=0", 11.0, 1200.0),
        row("trl", 30.0, 1000.0, "trl", tokens=150.0),
    ]
    ratios = key_ratios(rows)
    assert ratios["trl_over_rlvr_step_s"] == 3.0 and ratios["rlvr_peak_over_trl_peak"] == 0.9
    assert ratios["trl_over_rlvr_step_s_paired"] == 3.0  # rounds 2 and 3: 60 / 20 and 90 / 30
    # TRL's completions were 1.5x longer: (150 s / 300 tokens) / (50 s / 200 tokens) = 2
    assert ratios["trl_over_rlvr_step_s_per_generated_token"] == pytest.approx(2.0)
    assert ratios["rlvr_generated_tokens"] == 200.0 and ratios["trl_generated_tokens"] == 300.0
    assert ratios["logprob_chunk_peak_drop_mib"] == 300.0 and ratios["logprob_chunk_peak_drop_frac"] == 0.25
    assert rows[1]["vs_default"]["step_s"] == 1.1 and rows[1]["vs_default"]["peak_mib_diff"] == 300.0


@pytest.mark.slow
def test_random_qwen_has_the_real_shape_and_decodes_out_of_vocab_ids():
    from rlvr.models import load_model

    model, tokenizer = load_model("random:qwen2.5-0.5b")
    assert sum(p.numel() for p in model.parameters()) == 494_032_768
    assert model.config.vocab_size == 151936 > len(tokenizer)
    assert tokenizer.decode([151935, 300, 100_000], skip_special_tokens=True) == tokenizer.decode([300])


def test_render_prints_notes_and_errors_verbatim():
    """Notes and child errors hold brackets (pip extras, key paths) that rich would read as markup."""
    from io import StringIO

    from rich.console import Console

    from rlvr.bench.summary import render

    failed = {"name": "trl", "status": "error", "message": "ConfigError: pip install 'rlvr[bench]'"}
    result = {
        "contenders": [failed],
        "settings": {"steps": 1, "warmup": 0},
        "ceiling": {},
        "ratios": {},
        "notes": ["TRL skipped: not installed (pip install 'rlvr[bench]')"],
    }
    out = StringIO()
    render(result, Console(file=out, width=300))
    text = out.getvalue()
    assert "(pip install 'rlvr[bench]')" in text and "ConfigError: pip install 'rlvr[bench]'" in text


def test_ceiling_shapes_follow_the_micro_batch():
    from rlvr.bench import ceiling_shapes

    info = {"hidden_size": 576, "intermediate_size": 1536, "vocab_size": 49152}
    assert ceiling_shapes(info, "cpu", 32, 48) == [[2048, 2048, 2048], [3072, 576, 1536], [512, 576, 49152]]
    assert ceiling_shapes(info, "cpu", 32, 48, micro_batch_tokens=2048)[1] == [2048, 576, 1536]
    assert ceiling_shapes(info, "cpu", 1, 48)[1:] == [[256, 576, 1536], [256, 576, 49152]]
    assert ceiling_shapes(info, "cuda", 8, 48)[:2] == [[2048, 2048, 2048], [8192, 8192, 8192]]
