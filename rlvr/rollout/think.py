"""Rollouts that think in a marked span: budgets with forced answers, budget subgroups, modes, early exits.

Single-turn rollouts over any engine's ``continue_ids`` (the ``think`` config section,
:class:`rlvr.config_think.ThinkConfig`). The model thinks after the open marker (prefilled in the
assistant turn, as R1-style templates do) and answers after the close marker. Every token the
engine sampled is kept exactly, with its log-prob; text the rollout inserts (a forced answer, a
mode prefix) is tokenized once and marked with its own log-prob and loss mask:

- **Thinking budget, forced answer** (Xu et al. 2025, Elastic Reasoning, arXiv 2505.05315;
  AnytimeReasoner, Qi et al. 2025, arXiv 2505.13438): the thinking is sampled up to
  ``think.budget`` tokens, stopping at the close marker. A row that reaches the budget gets
  ``think.forced`` (the close marker and an answer prompt) appended, and every row that closed its
  thinking then samples an answer of up to ``think.answer_tokens``. The forced tokens are trained
  when ``think.train_forced`` (Elastic Reasoning keeps its forced ``</think>`` in the loss), with
  log-prob 0: the proposal that put them there chose them with probability 1, so the PPO ratio is
  the importance weight pi_theta / 1 of that deterministic proposal (verl, under Elastic Reasoning,
  recomputes the old log-prob instead, so its ratio starts at 1; here clipping can stop the
  gradient of a forced token whose probability is below 1 - clip_low).
- **Budget subgroups** (Lyu et al. 2025, HBPO, arXiv 2507.15844): the G rows of a group are split
  evenly across ``think.budgets``; each subgroup's assistant turn announces its budget after the
  open marker (HBPO's " I will answer the question within b tokens", prompt side: not trained),
  and ``Completion.think_budget`` is that b, which the budget-aware reward
  (:func:`rlvr.rewards.think.hbpo_budget`) and advantage (``hbpo``) read. Subgroups are contiguous.
- **No-think mode by importance sampling** (Zhang et al. 2025, AdaptThink, arXiv 2505.13417): the
  first ``round(no_think_frac x G)`` rows of each group are forced to close the thinking at once
  (their first token is the close marker's), the others to start thinking (``think.start``). The
  forced first token carries the proposal's log-prob, log(no_think_frac) or log(1 - no_think_frac)
  (AdaptThink's pi_IS, 0.5 in the paper), and is trained; the rest of the forced prefix is
  deterministic given the first token (log-prob 0). At eval the model chooses its mode itself.
- **Early-exit serial groups** (Dai et al. 2025, S-GRPO, arXiv 2505.07686): one thinking path is
  sampled per prompt; the other G - 1 rows exit from it at positions drawn uniformly over its
  thinking (sorted, early to late; seeded by the path itself, so a resumed run draws the same),
  each with ``think.forced`` appended and its own sampled answer. The shared prefix keeps the
  path's sampled log-probs. ``Completion.think_budget`` is the exit position (the full path: its
  thinking length), which :func:`rlvr.rewards.think.decaying_exit` orders by. The path is last. A
  path that ends (eos, a stop string) without closing its thinking exits only before that end.

``Completion.budget`` stays the whole response's budget (thinking + forced text + answer), which
``overlong``, ``cosine_length`` and ``concise`` read. The open marker is not prefilled again where the
chat template already ends with it (R1-distill templates end in ``<think>\n``).

Limits: single-turn only; the engine's stop strings see only what it generated, so a close marker
split across the inserted text and the sample is not caught; a stop string of ``rollout.stop``
ends a row's thinking and its answer alike.
"""

import hashlib
import math
import random
from dataclasses import dataclass, field, replace

from rlvr.config_think import ThinkConfig
from rlvr.rollout import RolloutEngine, SamplingParams, cut_at_stop, prompt_ids
from rlvr.types import Completion, Example


@dataclass
class Row:
    """One rollout being built: what goes before the sample (prompt side) and after it."""

    example: Example
    prompt: list[int]  # prompt ids with the prefilled open marker (and HBPO's announcement)
    think_budget: int | None  # the thinking budget (HBPO: the subgroup's announced one; S-GRPO: the exit position)
    token_ids: list[int] = field(default_factory=list)  # [T] the response so far
    logprobs: list[float] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    finish_reason: str = "stop"
    forced_answer: bool = False
    answering: bool = False  # the next sample is the answer (the thinking is closed)
    done: bool = False

    def add(self, ids: list[int], logprobs: list[float], trained: int) -> None:
        self.token_ids += ids
        self.logprobs += logprobs
        self.loss_mask += [trained] * len(ids)


def with_instruction(example: Example, think: ThinkConfig) -> Example:
    """The example with ``think.instruction`` appended to its last user message."""
    if not think.instruction:
        return example
    prompt = [dict(m) for m in example.prompt]
    last = max(i for i, m in enumerate(prompt) if m.get("role") == "user") if not example.raw_prompt else -1
    prompt[last]["content"] = prompt[last]["content"] + think.fill(think.instruction)
    return replace(example, prompt=prompt)


def is_no_think(text: str, open_marker: str, close: str, max_chars: int | None = None) -> bool:
    """The response skips thinking: its first text is the close marker (after the open marker, when
    the model writes that itself), AdaptThink's 1[y_1 = </think>], and the marker does not come
    again. A thinking that closes after a newline is thinking, however short; so is one written after
    an early close marker and closed a second time (``</think>\\n7 + 7 = 14. ...\\n</think>\\nThe answer``),
    which the embedded model learned under AdaptThink's bonus (docs/results.md): the bonus is for not
    thinking, not for where the marker stands. ``max_chars`` (``think.no_think_max_chars``) also makes
    an answer longer than that, after the marker and without surrounding whitespace, thinking: the
    worked steps written as the answer (``</think>\\n7 + 7 = 14. 14 + 7 = 21. The answer is ...``), the
    other form the model learned, which no marker rule can see; None keeps the paper's rule. The one
    test of it, for metrics, eval and the ``adapt_think`` reward."""
    rest = text[len(open_marker) :] if text.startswith(open_marker) else text
    if not rest.startswith(close) or close in rest[len(close) :]:
        return False
    return max_chars is None or len(rest[len(close) :].strip()) <= max_chars


def skips_thinking(text: str, think: ThinkConfig) -> bool:
    """:func:`is_no_think` under a run's ``think`` section (its markers and ``no_think_max_chars``)."""
    return is_no_think(text, think.open, think.close, think.no_think_max_chars)


def think_generate(
    engine: RolloutEngine,
    examples: list[Example],
    n: int,
    sampling: SamplingParams,
    think: ThinkConfig,
    train: bool = True,
) -> list[list[Completion]]:
    """n completions per example, [len(examples)][n] in example order. ``train``: the group modes
    (budget subgroups, no-think forcing, early exits) apply; eval samples each row freely, under
    the thinking budget only."""
    tokenizer = engine.tokenizer
    examples = [with_instruction(e, think) for e in examples]
    cap = think.budget or sampling.max_new_tokens  # the thinking's own cap
    if train and think.early_exits:
        rows = _early_exit_rows(engine, examples, n, sampling, think, cap)
    else:
        rows = []
        for example in examples:
            base = opened_prompt(tokenizer, example, think)
            rows += [_planned_row(tokenizer, example, base, j, n, think, train, cap) for j in range(n)]
        _sample(engine, [r for r in rows if not r.done], sampling, think, cap, stop_at_close=think.budget is not None)
    forced = encode(tokenizer, think.fill(think.forced))
    _close_or_force(engine, rows, sampling, think, forced)
    phased = think.budget is not None or (train and think.early_exits)
    total = cap + len(forced) + think.answer_tokens if phased else cap
    groups: list[list[Completion]] = [[] for _ in examples]
    for k, row in enumerate(rows):
        groups[k // n].append(_completion(tokenizer, row, total, sampling.stop))
    return groups


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def opened_prompt(tokenizer, example: Example, think: ThinkConfig) -> list[int]:
    """The prompt's ids with the open marker prefilled, unless the template already ends with it."""
    ids = prompt_ids(tokenizer, example)
    if not think.prefill or ends_with_open(tokenizer, ids, think):
        return ids
    return ids + encode(tokenizer, think.open)


def ends_with_open(tokenizer, ids: list[int], think: ThinkConfig) -> bool:
    """Whether prompt ``ids`` already end with the open marker (prefilled, or the chat template's own)."""
    return tokenizer.decode(ids[-16:], skip_special_tokens=False).rstrip().endswith(think.open)


def _planned_row(tokenizer, example, base, j, n, think, train, cap) -> Row:
    if train and think.budgets:
        budget = think.budgets[j // (n // len(think.budgets))]
        announced = encode(tokenizer, think.budget_prefix.replace("{budget}", str(budget)))
        return Row(example, base + announced, budget)
    row = Row(example, base, cap)
    if train and think.no_think_frac:
        skipping = j < round(think.no_think_frac * n)
        prefix = encode(tokenizer, think.close if skipping else think.start)
        chance = think.no_think_frac if skipping else 1.0 - think.no_think_frac
        row.add(prefix, [math.log(chance)] + [0.0] * (len(prefix) - 1), trained=1)
        row.answering = skipping
    return row


def _sample(engine, rows: list[Row], sampling: SamplingParams, think: ThinkConfig, cap: int, stop_at_close: bool):
    """The thinking (or, for rows already past the close marker, the answer) of each row, up to
    ``cap`` tokens; with ``stop_at_close`` the thinking stops at the close marker, for the answer
    phase to follow."""
    if not rows:
        return
    stop = [*sampling.stop, think.close] if stop_at_close else sampling.stop
    thinking = replace(sampling, max_new_tokens=cap, stop=stop)
    samples = engine.continue_ids([r.prompt + r.token_ids for r in rows], thinking)
    eos = engine.tokenizer.eos_token_id
    for row, sample in zip(rows, samples, strict=True):
        row.add(sample.token_ids, sample.logprobs, trained=1)
        row.finish_reason = sample.finish_reason
        ended = bool(sample.token_ids) and sample.token_ids[-1] == eos
        if not stop_at_close or row.answering or ended:
            row.done = True
        elif sample.finish_reason == "stop" and think.close in sample.text:
            row.answering = True  # closed its thinking within budget: now the answer
        elif sample.finish_reason == "stop":
            row.done = True  # one of rollout.stop
        # else: cut at the budget, the answer is forced in _close_or_force


def _close_or_force(engine, rows: list[Row], sampling: SamplingParams, think: ThinkConfig, forced: list[int]):
    """Force the answer (``forced``: ``think.forced``'s ids) of rows cut at the budget; sample the
    answer of every row not done."""
    pending = [r for r in rows if not r.done]
    for row in pending:
        if not row.answering:
            row.add(forced, [0.0] * len(forced), trained=int(think.train_forced))
            row.forced_answer = True
    if not pending:
        return
    answer = replace(sampling, max_new_tokens=think.answer_tokens)
    samples = engine.continue_ids([r.prompt + r.token_ids for r in pending], answer)
    for row, sample in zip(pending, samples, strict=True):
        row.add(sample.token_ids, sample.logprobs, trained=1)
        row.finish_reason = sample.finish_reason
        row.done = True


def _early_exit_rows(engine, examples, n, sampling, think, cap) -> list[Row]:
    """S-GRPO: a sampled path per example, then n - 1 early exits from it, the path last."""
    tokenizer = engine.tokenizer
    paths = [Row(e, opened_prompt(tokenizer, e, think), cap) for e in examples]
    _sample(engine, paths, sampling, think, cap, stop_at_close=True)
    rows = []
    for path in paths:
        thinking = thinking_length(tokenizer, path.token_ids, think.close, sampling.stop)
        for p in exit_positions(path.token_ids, thinking, n - 1):
            row = Row(path.example, path.prompt, p)
            row.add(path.token_ids[:p], path.logprobs[:p], trained=1)
            rows.append(row)
        path.think_budget = thinking
        rows.append(path)
    return rows


def thinking_length(tokenizer, ids: list[int], close: str, stop: list[str] = ()) -> int:
    """Tokens of thinking: those before the close marker (or a stop string) begins, without a
    trailing eos; all of them when neither appears. Decoded prefixes only grow, so the cut is
    found by bisection (log n decodes, not n)."""
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    starts = [text.index(s) for s in (close, *stop) if s and s in text]
    if not starts:
        return len(ids)
    start = min(starts)
    low, high = 0, len(ids)  # the longest prefix whose text ends at or before ``start``
    while low < high:
        mid = (low + high + 1) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) <= start:
            low = mid
        else:
            high = mid - 1
    return low


def exit_positions(path: list[int], thinking: int, count: int) -> list[int]:
    """``count`` exit positions in 1..thinking, uniform, distinct where the thinking is long enough,
    sorted; seeded by the path's tokens (the same path always exits at the same places). A path
    with no thinking at all exits at 0 (the answer straight after the prompt)."""
    seed = hashlib.sha256(",".join(map(str, path)).encode()).hexdigest()
    rng = random.Random(seed)
    span = range(1, thinking + 1) if thinking >= 1 else range(0, 1)
    picks = rng.sample(span, count) if len(span) >= count else [rng.choice(span) for _ in range(count)]
    return sorted(picks)


def _completion(tokenizer, row: Row, total_budget: int, stop: list[str]) -> Completion:
    text = tokenizer.decode(row.token_ids, skip_special_tokens=True)
    return Completion(
        example=row.example,
        text=cut_at_stop(text, stop) if row.finish_reason == "stop" else text,
        prompt_ids=row.prompt,
        token_ids=row.token_ids,
        logprobs=row.logprobs,
        loss_mask=row.loss_mask,
        finish_reason=row.finish_reason,
        budget=total_budget,
        forced_answer=row.forced_answer,
        think_budget=row.think_budget,
    )


def think_metrics(completions: list[Completion], think: ThinkConfig, prefix: str = "think") -> dict[str, float]:
    """No-think rate, forced-answer rate and the rate of thinking the model closed itself."""
    n = max(len(completions), 1)
    return {
        f"{prefix}/no_think_rate": sum(skips_thinking(c.text, think) for c in completions) / n,
        f"{prefix}/forced_frac": sum(c.forced_answer for c in completions) / n,
        f"{prefix}/closed_frac": sum(think.close in c.text and not c.forced_answer for c in completions) / n,
    }
