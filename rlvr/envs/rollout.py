"""The multi-turn rollout loop over any rollout engine.

All episodes of a batch advance together, one model turn at a time: the engine continues every
live episode's token sequence until a stop string of its environment (a tool call's end), eos
or the per-turn token limit; the environments answer concurrently (tool calls are subprocess
or SQLite work, so threads overlap them); each observation is tokenized and appended with loss
mask 0 and log-prob 0, so tool output conditions the model but is never trained on (R1-Code-
Interpreter's masked setting). The model's tokens are kept exactly as sampled, never re-
tokenized, so the trainer scores precisely the sequence the sampler produced.

Limits: every live episode waits for the slowest tool call of its turn; per-turn generation
uses ``rollout.max_new_tokens`` and a row over the total budget is cut afterwards.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from rlvr.envs import ENVS, Env, StepResult
from rlvr.envs import python_env as _python_env  # noqa: F401 - registers "python"
from rlvr.envs import search_env as _search_env  # noqa: F401 - registers "search"
from rlvr.rollout import RolloutEngine, SamplingParams, chat_prompt_ids
from rlvr.types import Completion, Example, Turn


@dataclass
class Episode:
    example: Example
    env: Env
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    finish_reason: str | None = None  # set when the episode ends

    def add(self, ids: list[int], logprobs: list[float], trained: int) -> None:
        self.token_ids += ids
        self.logprobs += logprobs
        self.loss_mask += [trained] * len(ids)


def multi_turn_generate(
    engine: RolloutEngine, examples: list[Example], n: int, sampling: SamplingParams, tools
) -> list[list[Completion]]:
    """n episodes per example with the ``tools.env`` environment: [len(examples)][n] completions."""
    make_env = ENVS.get(tools.env)
    tokenizer = engine.tokenizer
    episodes = []
    try:
        for example in examples:
            for _ in range(n):
                env = make_env(tools)
                episodes.append(Episode(example, env, _prompt_ids(tokenizer, example, env.reset(example))))
        turn_sampling = replace(sampling, stop=[*sampling.stop, *episodes[0].env.stop])
        with ThreadPoolExecutor(max_workers=tools.workers) as pool:
            for _ in range(tools.max_turns):
                live = [e for e in episodes if e.finish_reason is None]
                if not live:
                    break
                samples = engine.continue_ids([e.prompt_ids + e.token_ids for e in live], turn_sampling)
                acting = []
                for episode, sample in zip(live, samples, strict=True):
                    room = tools.max_total_tokens - len(episode.token_ids)
                    ids, logprobs = sample.token_ids[:room], sample.logprobs[:room]
                    episode.add(ids, logprobs, trained=1)
                    text = (
                        tokenizer.decode(ids, skip_special_tokens=True)
                        if len(ids) < len(sample.token_ids)
                        else sample.text
                    )
                    ended_by_tool_stop = sample.finish_reason == "stop" and not (
                        ids and ids[-1] == tokenizer.eos_token_id
                    )
                    if len(ids) < len(sample.token_ids) or len(episode.token_ids) >= tools.max_total_tokens:
                        episode.turns.append(Turn(text, ""))
                        episode.finish_reason = "length"
                    elif not ended_by_tool_stop:  # eos (the model's answer) or the per-turn limit
                        episode.turns.append(Turn(text, ""))
                        episode.finish_reason = sample.finish_reason
                    else:
                        acting.append((episode, text))
                results = list(pool.map(lambda job: _safe_step(job[0].env, job[1]), acting))
                for (episode, text), result in zip(acting, results, strict=True):
                    _observe(episode, text, result, tokenizer, tools.max_total_tokens)
        for episode in episodes:
            if episode.finish_reason is None:
                episode.finish_reason = "turns"
    finally:
        for episode in episodes:
            episode.env.close()
    return _completions(episodes, examples, n, tools.max_total_tokens)


def _safe_step(env: Env, text: str) -> StepResult:
    """A tool must never stop the run: anything it raises becomes the observation."""
    try:
        return env.step(text)
    except Exception as err:  # noqa: BLE001 - the model sees the error, the metrics count it
        return StepResult(
            observation=f"\n[tool error: {type(err).__name__}: {err}]\n",
            done=False,
            tool=type(env).__name__,
            error="crash",
        )


def _observe(episode: Episode, text: str, result: StepResult, tokenizer, budget: int) -> None:
    episode.turns.append(Turn(text, result.observation, result.tool, result.error))
    if result.done:
        episode.finish_reason = "stop"
        return
    if not result.observation:
        return
    ids = tokenizer(result.observation, add_special_tokens=False)["input_ids"]
    room = budget - len(episode.token_ids)
    episode.add(ids[:room], [0.0] * min(len(ids), room), trained=0)
    if len(ids) >= room:
        episode.finish_reason = "length"


def _prompt_ids(tokenizer, example: Example, messages) -> list[int]:
    return chat_prompt_ids(tokenizer, replace(example, prompt=messages))


def _completions(episodes: list[Episode], examples: list[Example], n: int, budget: int) -> list[list[Completion]]:
    groups: list[list[Completion]] = [[] for _ in examples]
    for k, e in enumerate(episodes):
        text = "".join(turn.text + turn.observation for turn in e.turns)
        groups[k // n].append(
            Completion(
                e.example, text, e.prompt_ids, e.token_ids, e.logprobs, e.loss_mask, e.finish_reason, e.turns, budget
            )
        )
    return groups
