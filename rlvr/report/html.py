"""The self-contained report page: one HTML file that works offline from disk.

Plots are embedded as base64 PNG data URIs and all CSS and JavaScript is inline (no CDN, no
fetch), so ``report.html`` can be mailed or opened from a laptop. Every string that comes from
a run (model text, config, run names, notes) is HTML-escaped.
"""

import base64
from datetime import datetime
from html import escape
from typing import Any

from rlvr.report.browser import SCRIPT, rollout_section
from rlvr.report.fits import Fit
from rlvr.report.load import RunData
from rlvr.report.plots import Plot
from rlvr.report.summary import TOKENS_NOTE

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1400px;
  padding: 1rem 2rem; color: #1d2330; background: #fafbfc; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d8dde6; }
table { border-collapse: collapse; background: #fff; } th, td { border: 1px solid #d8dde6; padding: .3rem .5rem;
  vertical-align: top; text-align: left; } th { background: #eef1f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.small { color: #5b6475; font-size: 12px; } .notes li { color: #8a4b00; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1rem; }
.plots img { width: 100%; background: #fff; border: 1px solid #d8dde6; }
pre { background: #fff; border: 1px solid #d8dde6; padding: .6rem; overflow: auto; font-size: 12px; }
details { margin: .4rem 0; } summary { cursor: pointer; font-weight: 600; }
.controls { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin: .5rem 0; }
.controls input { width: 22rem; } .count { font-weight: 600; }
.rollouts { font-size: 12px; width: 100%; } .rollouts .text { white-space: pre-wrap; word-break: break-word;
  max-height: 12rem; overflow: auto; font-family: ui-monospace, monospace; min-width: 14rem; }
.rollouts td.k { white-space: nowrap; }
tr.c1 td:first-child { border-left: 4px solid #2e9d4f; } tr.c0 td:first-child { border-left: 4px solid #c94a3f; }
"""


def render_page(
    runs: list[RunData], summaries: list[dict[str, Any]], plots: list[Plot], fits: list[Fit], fit_plots: list[Plot]
) -> str:
    names = ", ".join(run.name for run in runs)
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    sources = "".join(f"<li><b>{escape(r.name)}</b>: {escape(str(r.path.resolve()))}</li>" for r in runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rlvr report: {escape(names)}</title>
<style>{STYLE}</style></head><body>
<h1>rlvr report</h1>
<p class="small">Generated {generated} by <code>rlvr report</code>.</p>
<ul>{sources}</ul>
{_notes(runs)}
<h2>Summary</h2>
{_summary_table(runs, summaries)}
<p class="small">{escape(TOKENS_NOTE)}</p>
<h2>Metrics</h2>
{_images(plots) or "<p>No metrics logged yet.</p>"}
<h2>Scaling fits</h2>
{_fit_table(fits)}
{_images(fit_plots)}
<h2>Rollouts</h2>
{rollout_section(runs)}
<h2>Configs</h2>
{_configs(runs)}
<script>{SCRIPT}</script>
</body></html>
"""


def _notes(runs: list[RunData]) -> str:
    items = "".join(f"<li>{escape(run.name)}: {escape(note)}</li>" for run in runs for note in run.notes)
    return f'<h2>Read notes</h2><ul class="notes">{items}</ul>' if items else ""


def _summary_table(runs: list[RunData], summaries: list[dict[str, Any]]) -> str:
    rows = [
        ("status", lambda s: s["status"]),
        ("steps", lambda s: f"{s['steps']}" + (f" / {s['planned_steps']}" if s["planned_steps"] else "")),
        ("held-out accuracy, final", lambda s: _at(s["final_eval_accuracy"])),
        ("held-out accuracy, best", lambda s: _at(s["best_eval_accuracy"])),
        ("held-out accuracy, before training", lambda s: _at(s["initial_eval_accuracy"])),
        ("train reward, last step", lambda s: _fmt(s["final_train_reward"])),
        ("wall time", lambda s: _duration(s["wall_time_s"])),
        ("rollout tokens generated", lambda s: _count(s["rollout_tokens"])),
        ("eval tokens generated", lambda s: _count(s["eval_tokens"])),
        ("rollouts logged (samples.jsonl)", lambda s: _count(s["rollouts_logged"])),
    ]
    head = "".join(f"<th>{escape(run.name)}</th>" for run in runs)
    body = "".join(
        f"<tr><th>{label}</th>" + "".join(f'<td class="n">{escape(cell(s))}</td>' for s in summaries) + "</tr>"
        for label, cell in rows
    )
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fit_table(fits: list[Fit]) -> str:
    if not fits:
        return "<p>No metric to fit.</p>"
    body = "".join(
        f"<tr><td>{escape(f.run)}</td><td>{escape(f.metric)}</td><td>{escape(f.formula)}</td>"
        f'<td class="n">{_fmt(f.a)}</td><td class="n">{_fmt(f.b)}</td><td class="n">{_fmt(f.r2)}</td>'
        f'<td class="n">{f.n}</td><td>{escape(f.note)}</td></tr>'
        for f in fits
    )
    return (
        '<p class="small">Least squares over the points with step &gt; 0; the power law in log-log space over '
        "y &gt; 0. R² is computed on y for both forms.</p><table><thead><tr><th>run</th><th>metric</th>"
        "<th>form</th><th>a</th><th>b</th><th>R²</th><th>points</th><th>note</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _images(plots: list[Plot]) -> str:
    figures = "".join(
        f'<figure><img alt="{escape(p.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.path.read_bytes()).decode("ascii")}"></figure>'
        for p in plots
    )
    return f'<div class="plots">{figures}</div>' if figures else ""


def _configs(runs: list[RunData]) -> str:
    return "".join(
        f"<details><summary>{escape(run.name)}: config.yaml</summary>"
        f"<pre>{escape(run.config_text or '(config.yaml not found)')}</pre></details>"
        for run in runs
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _at(pair: tuple[int, float] | None) -> str:
    return "—" if pair is None else f"{pair[1]:.3f} (step {pair[0]})"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
