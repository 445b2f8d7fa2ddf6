"""Derived numbers of ``rlvr bench``: throughputs, model FLOP/s, fractions of the ceiling, ratios.

Model FLOPs follow the usual dense-transformer count (Kaplan et al. 2020): a forward pass costs
2 x parameters per token, forward + backward 6 x parameters per token. Attention's own
sequence-length term is left out (small at these lengths). So:

- generation FLOP/s = 2 N x generated tokens / rollout time;
- update FLOP/s = 6 N x forwarded tokens (prompt + completion, as the trainer reports
  ``tokens/forwarded``) / update time; "useful" counts only trained (completion) tokens.

The count is of the work a plain implementation would do: an implementation that skips work
(the LM head only at completion positions, a shared prompt forwarded once per group) scores
higher than the FLOPs it really runs, and one that recomputes (TRL's default gradient
checkpointing, ~8 N per token) lower.

Every per-step number is derived per step, then summarized by median, min and max over the
measured steps (warm-up steps are kept in the JSON, marked, and left out of the summary).
"""

import statistics

FLOPS_PER_PARAM = {"forward": 2, "train": 6}


def model_flops(params: int, tokens: float, phase: str = "train") -> float:
    """FLOPs of ``tokens`` tokens through a ``params``-parameter model: 2 N per token forward, 6 N
    forward + backward."""
    return FLOPS_PER_PARAM[phase] * params * tokens


def per_step_numbers(metrics: dict, params: int | None) -> dict:
    """The derived numbers of one step from its raw metrics (None where an input is missing)."""

    def ratio(num, den):
        return num / den if num is not None and den else None

    step = metrics.get("time/step")
    rollout, update = metrics.get("time/rollout"), metrics.get("time/update")
    generated, trained = metrics.get("tokens/generated"), metrics.get("tokens/trained")
    forwarded = metrics.get("tokens/forwarded")
    numbers = {
        "step_s": step,
        "rollout_s": rollout,
        "update_s": update,
        "gen_tok_s": ratio(generated, rollout),
        "update_tok_s": ratio(trained, update),
    }
    if params:
        numbers["gen_flops"] = ratio(model_flops(params, generated, "forward") if generated else None, rollout)
        numbers["update_flops"] = ratio(model_flops(params, forwarded) if forwarded else None, update)
        numbers["useful_update_flops"] = ratio(model_flops(params, trained) if trained else None, update)
    return numbers


def stats(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(steps: list[dict], params: int | None, ceiling: float | None) -> dict:
    """Median / min / max of every derived number over the measured (non-warm-up) steps."""
    measured = [per_step_numbers(s["metrics"], params) for s in steps if not s["warmup"]]
    keys = measured[0].keys() if measured else []
    summary = {key: stats([m[key] for m in measured]) for key in keys}
    for key, frac in (("update_flops", "ceiling_frac"), ("useful_update_flops", "useful_ceiling_frac")):
        if ceiling and summary.get(key):
            summary[frac] = summary[key]["median"] / ceiling
    return summary


def peak_mib(memory: dict) -> float | None:
    """The memory column: CUDA's allocator peak on a GPU; on CPU the RSS high-water mark over the
    steps, or the whole process's peak where the kernel would not reset the mark."""
    for key in ("cuda_max_allocated_mib", "step_peak_rss_mib", "process_peak_rss_mib"):
        if memory.get(key) is not None:
            return memory[key]
    return None


def median(summary: dict, key: str) -> float | None:
    entry = summary.get(key)
    return entry["median"] if entry else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def paired_ratio(a: dict, b: dict, key: str) -> float | None:
    """Median over measured rounds of a's step k / b's step k: interleaved steps run back to back,
    so each pair saw about the same load; steadier than a ratio of medians on a busy machine."""
    pairs = [
        ratio(x["metrics"].get(key), y["metrics"].get(key))
        for x, y in zip(a.get("steps", []), b.get("steps", []), strict=False)
        if not x["warmup"] and not y["warmup"]
    ]
    return statistics.median([p for p in pairs if p is not None]) if any(p is not None for p in pairs) else None


def measured_sum(row: dict, key: str) -> float:
    """The sum of metric ``key`` over the measured (non-warm-up) steps."""
    return sum(s["metrics"].get(key) or 0 for s in row.get("steps", []) if not s["warmup"])


def seconds_per_token(row: dict) -> float | None:
    """Step seconds per generated token over the measured steps (sum / sum). Contenders draw
    different samples, so their completions differ in length; this ratio compares equal work."""
    return ratio(measured_sum(row, "time/step"), measured_sum(row, "tokens/generated"))


def key_ratios(rows: list[dict]) -> dict:
    """rlvr against TRL (speed-ups > 1 favour rlvr), and each variant against rlvr's default."""
    ok = {row["name"]: row for row in rows if row["status"] == "ok"}
    rlvr, trl = ok.get("rlvr"), ok.get("trl")
    out: dict = {}
    if rlvr:
        out["rlvr_update_ceiling_frac"] = rlvr["summary"].get("ceiling_frac")
        out["rlvr_useful_update_ceiling_frac"] = rlvr["summary"].get("useful_ceiling_frac")
    if rlvr and trl:
        for key in ("step_s", "rollout_s", "update_s"):
            out[f"trl_over_rlvr_{key}"] = ratio(median(trl["summary"], key), median(rlvr["summary"], key))
        out["rlvr_peak_over_trl_peak"] = ratio(rlvr["peak_mib"], trl["peak_mib"])
        out["trl_over_rlvr_step_s_paired"] = paired_ratio(trl, rlvr, "time/step")
        out["trl_over_rlvr_step_s_per_generated_token"] = ratio(seconds_per_token(trl), seconds_per_token(rlvr))
        out["rlvr_generated_tokens"] = measured_sum(rlvr, "tokens/generated")  # the work behind the two ratios
        out["trl_generated_tokens"] = measured_sum(trl, "tokens/generated")
    trls = [row for row in ok.values() if row["kind"] == "trl" and median(row["summary"], "step_s")]
    if rlvr and trls:  # TRL at its best precision setting (the fastest of its rows)
        best = min(trls, key=lambda row: median(row["summary"], "step_s"))
        out["trl_best"] = best["name"]
        out["trl_best_over_rlvr_step_s"] = ratio(median(best["summary"], "step_s"), median(rlvr["summary"], "step_s"))
        out["trl_best_over_rlvr_step_s_per_generated_token"] = ratio(seconds_per_token(best), seconds_per_token(rlvr))
    for row in rows:
        if row["kind"] == "rlvr" and row["name"] != "rlvr" and row["status"] == "ok" and rlvr:
            row["vs_default"] = {
                key: ratio(median(row["summary"], key), median(rlvr["summary"], key))
                for key in ("step_s", "rollout_s", "update_s")
            } | {"peak_mib_diff": (row["peak_mib"] or 0) - (rlvr["peak_mib"] or 0)}
    lean = ok.get("train.logprob_chunk=0")
    if rlvr and lean and rlvr["peak_mib"] and lean["peak_mib"]:
        out["logprob_chunk_peak_drop_mib"] = lean["peak_mib"] - rlvr["peak_mib"]
        out["logprob_chunk_peak_drop_frac"] = 1 - rlvr["peak_mib"] / lean["peak_mib"]
    return out


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _flops(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:,.1f} GFLOP/s"


def render(result: dict, console) -> None:
    """The table (one row per contender or variant) and the lines with the ceiling and key ratios."""
    from rich.markup import escape as rich_escape
    from rich.table import Table

    rows = result["contenders"]
    trl = next((r for r in rows if r["name"] == "trl" and r["status"] == "ok"), None)
    table = Table(title=f"rlvr bench: {result['settings']['steps']} steps after {result['settings']['warmup']} warm-up")
    headers = ["", "step s", "rollout s", "update s", "gen tok/s", "upd tok/s", "peak MiB", "% ceil", "useful %"]
    for header in headers + ["TRL step / this", "vs rlvr step"]:
        table.add_column(header, justify="left" if not header else "right")
    for row in rows:
        if row["status"] != "ok":
            message = rich_escape(f"{row['status']}: {row['message']}"[:100])
            table.add_row(row["name"], message, *[""] * (len(headers)))
            continue
        s = row["summary"]
        step = s.get("step_s")
        step_text = f"{step['median']:.2f} ({step['min']:.2f}-{step['max']:.2f})" if step else "-"
        pct = [f"{100 * s[k]:.1f}" if s.get(k) is not None else "-" for k in ("ceiling_frac", "useful_ceiling_frac")]
        vs_trl = ratio(median(trl["summary"], "step_s"), median(s, "step_s")) if trl and row is not trl else None
        vs_default = row.get("vs_default", {}).get("step_s")
        table.add_row(
            row["name"], step_text, _num(median(s, "rollout_s")), _num(median(s, "update_s")),
            _num(median(s, "gen_tok_s"), 1), _num(median(s, "update_tok_s"), 1), _num(row["peak_mib"], 0),
            *pct, _num(vs_trl) + ("x" if vs_trl else ""), _num(vs_default) + ("x" if vs_default else ""),
        )  # fmt: skip
    console.print(table)
    ceiling = result["ceiling"]
    if ceiling.get("by_dtype"):
        both = ", ".join(f"{dtype} {_flops(entry['best_flops'])}" for dtype, entry in ceiling["by_dtype"].items())
        console.print(
            f"matmul ceilings ({result['machine']['threads']} threads, best of {ceiling['shape_text']}): {both}; "
            f"fractions below are of the {ceiling['dtype']} one (rlvr's compute)"
        )
    k = result["ratios"]
    parts = []
    if k.get("trl_over_rlvr_step_s"):
        paired = k.get("trl_over_rlvr_step_s_paired")
        parts.append(
            f"TRL step / rlvr step = {k['trl_over_rlvr_step_s']:.2f}x"
            + (f" (median of per-round ratios {paired:.2f}x)" if paired else "")
        )
        if k.get("trl_over_rlvr_step_s_per_generated_token"):
            parts.append(
                f"per generated token {k['trl_over_rlvr_step_s_per_generated_token']:.2f}x "
                f"(rlvr generated {k['rlvr_generated_tokens']:,.0f} tokens, TRL {k['trl_generated_tokens']:,.0f})"
            )
    if k.get("trl_best_over_rlvr_step_s") and len([r for r in rows if r.get("kind") == "trl"]) > 1:
        parts.append(
            f"TRL at its best ({k['trl_best']}) / rlvr = {k['trl_best_over_rlvr_step_s']:.2f}x by step, "
            f"{k.get('trl_best_over_rlvr_step_s_per_generated_token') or 0:.2f}x per generated token"
        )
    if k.get("rlvr_peak_over_trl_peak"):
        parts.append(f"rlvr peak / TRL peak = {k['rlvr_peak_over_trl_peak']:.2f}")
    if k.get("rlvr_update_ceiling_frac") is not None:
        parts.append(
            f"rlvr update = {100 * k['rlvr_update_ceiling_frac']:.1f}% of the ceiling "
            f"({100 * (k.get('rlvr_useful_update_ceiling_frac') or 0):.1f}% counting trained tokens only)"
        )
    if parts:
        console.print("; ".join(parts))
    if k.get("logprob_chunk_peak_drop_mib") is not None:
        console.print(
            f"memory-lean log-probs (train.logprob_chunk): peak {k['logprob_chunk_peak_drop_mib']:,.0f} MiB lower "
            f"({100 * k['logprob_chunk_peak_drop_frac']:.1f}%) than with train.logprob_chunk=0"
        )
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False)  # notes hold pip extras like rlvr[bench]
