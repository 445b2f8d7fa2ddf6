"""The rollout browser: samples.jsonl rows as an HTML table with filters.

Rows are rendered on the Python side with every piece of model text HTML-escaped (a completion
is untrusted: ``<script>`` in it must show as text), and carry ``data-`` attributes that the
inline script filters on: run, step, correct or not, and a text search over the row. No data is
injected into the script itself, so there is no JSON-in-<script> escaping to get wrong.

"Correct" is the task's verifier component (``components[verifier] >= 1``): the run's
``eval.verifier`` if set, else ``math`` or ``countdown`` when present, else ``reward >= 1``.
"""

import math
from html import escape
from typing import Any

from rlvr.report.load import RunData, as_float

VERIFIERS = ("math", "countdown")

SCRIPT = """
(function () {
  const rows = Array.from(document.querySelectorAll('#rollouts tbody tr'));
  const texts = rows.map(tr => tr.textContent.toLowerCase());
  const get = id => document.getElementById(id);
  function apply() {
    const run = get('f-run') ? get('f-run').value : '';
    const step = get('f-step').value, outcome = get('f-outcome').value;
    const query = get('f-search').value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((tr, i) => {
      const ok = (!run || tr.dataset.run === run) && (!step || tr.dataset.step === step) &&
        (!outcome || tr.dataset.correct === outcome) && (!query || texts[i].includes(query));
      tr.hidden = !ok;
      shown += ok;
    });
    get('f-count').textContent = shown + ' of ' + rows.length + ' rollouts shown';
  }
  ['f-run', 'f-step', 'f-outcome'].forEach(id => get(id) && get(id).addEventListener('change', apply));
  get('f-search').addEventListener('input', apply);
  apply();
})();
"""


def verifier_of(run: RunData) -> str | None:
    """The component that decides "correct" for this run's rollouts (None: use reward >= 1)."""
    eval_config = run.config.get("eval")
    configured = eval_config.get("verifier") if isinstance(eval_config, dict) else None
    names = {name for row in run.samples if isinstance(row.get("components"), dict) for name in row["components"]}
    for name in ([configured] if configured else []) + list(VERIFIERS):
        if name in names:
            return name
    return None


def is_correct(row: dict[str, Any], verifier: str | None) -> bool:
    components = row.get("components") if isinstance(row.get("components"), dict) else {}
    value = as_float(components.get(verifier)) if verifier else as_float(row.get("reward"))
    return value is not None and value >= 1.0


def rollout_section(runs: list[RunData]) -> str:
    """The browser's controls and table (the script is :data:`SCRIPT`, added by the page)."""
    many = len(runs) > 1
    steps = sorted({row["step"] for run in runs for row in run.samples})
    body, total = [], 0
    for index, run in enumerate(runs):
        verifier = verifier_of(run)
        for row in run.samples:
            body.append(_row(index, run.name if many else None, row, is_correct(row, verifier)))
            total += 1
    if not total:
        return "<p>No rollouts logged yet (samples.jsonl is missing or empty; see log.samples_every).</p>"
    rule = "; ".join(f"{run.name}: {_rule(verifier_of(run))}" for run in runs) if many else _rule(verifier_of(runs[0]))
    run_select = ""
    if many:
        options = "".join(f'<option value="{i}">{escape(r.name)}</option>' for i, r in enumerate(runs))
        run_select = f'<label>run <select id="f-run"><option value="">all</option>{options}</select></label>'
    step_options = "".join(f'<option value="{s}">{s}</option>' for s in steps)
    head = "".join(
        f"<th>{h}</th>"
        for h in (["run"] if many else [])
        + ["step", "id", "prompt", "completion", "answer", "reward", "components", "advantage", "finish"]
    )
    return f"""
<div class="controls">
  {run_select}
  <label>step <select id="f-step"><option value="">all</option>{step_options}</select></label>
  <label>outcome <select id="f-outcome"><option value="">all</option>
    <option value="1">correct</option><option value="0">incorrect</option></select></label>
  <label>search <input id="f-search" type="search" placeholder="text in prompt, completion, id..."></label>
  <span id="f-count" class="count">{total} rollouts</span>
</div>
<p class="small">Correct means {escape(rule)}.</p>
<table id="rollouts" class="rollouts"><thead><tr>{head}</tr></thead><tbody>
{"".join(body)}
</tbody></table>"""


def _rule(verifier: str | None) -> str:
    return f"components[{verifier}] ≥ 1" if verifier else "reward ≥ 1 (no verifier component logged)"


def _row(index: int, run_name: str | None, row: dict[str, Any], correct: bool) -> str:
    components = row.get("components") if isinstance(row.get("components"), dict) else {}
    parts = "<br>".join(f"{escape(str(k))} = {_num(v)}" for k, v in components.items())

    def short(html: str) -> str:  # a cell that does not wrap
        return f'<td class="k">{html}</td>'

    def text(value: Any) -> str:  # model text: wraps, scrolls when long
        return f'<td><div class="text">{escape(str(value))}</div></td>'

    cells = [short(escape(run_name))] if run_name is not None else []
    cells += [short(str(row["step"])), short(escape(str(row.get("id", ""))))]
    cells += [text(row.get("prompt", "")), text(row.get("completion", "")), short(escape(str(row.get("answer", ""))))]
    cells += [short(_num(row.get("reward"))), short(parts), short(_num(row.get("advantage")))]
    cells += [short(escape(str(row.get("finish_reason", ""))))]
    flag = "1" if correct else "0"
    attributes = f'data-run="{index}" data-step="{row["step"]}" data-correct="{flag}" class="c{flag}"'
    return f"<tr {attributes}>{''.join(cells)}</tr>\n"


def _num(value: Any) -> str:
    number = as_float(value)
    if number is None:
        return escape(str(value)) if value is not None else ""
    return f"{number:.4g}" if math.isfinite(number) else str(number)
