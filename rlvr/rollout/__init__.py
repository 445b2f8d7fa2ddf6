"""Rollout engines: turn token prefixes (and so examples) into sampled continuations.

A rollout engine is any object with these methods (a Protocol, no base class):

- ``continue_ids(prefixes, sampling, seeds=None) -> list[Sample]``: one sampled continuation of each
  token prefix, with the sampling policy's log-probs and a finish reason. Each row samples from its
  own stream (``seeds``, else derived from ``sampling.seed``: :mod:`rlvr.rollout.seeds`), so the
  tokens do not depend on batching or placement. The primitive: single-turn
  rollouts call it on chat prompts, multi-turn rollouts (rlvr.envs) on whole conversations so far.
- ``update_weights(model, version=None) -> None``: make the engine sample from the trainer's new weights
  (``version``: the optimizer steps in them; an engine that holds that version already may skip the copy).

``generate(engine, examples, n, sampling)`` turns examples into G completions each.

Engines: ``hf`` drives transformers' ``generate``; ``fast`` (rlvr.rollout.fast) is rlvr's own
decode loop with a KV cache: each distinct prefix is prefilled once and shared by its rows, and
finished rows leave the batch.
"""

import functools
import json
from dataclasses import dataclass, field
from typing import Protocol

from rlvr.types import Completion, Example


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 48
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    return_logprobs: bool = True
    seed: int | None = None  # each row's random stream from (seed, its prefix, occurrence): rlvr.rollout.seeds


@dataclass
class Sample:
    """One sampled continuation of one token prefix."""

    token_ids: list[int]  # [T] generated ids, eos / the token completing a stop string included
    logprobs: list[float]  # [T] log-prob of each token under the tempered sampling policy
    finish_reason: str  # "stop" (eos or stop string) | "length"
    text: str  # decoded, special tokens skipped, cut after the first stop string


class RolloutEngine(Protocol):
    tokenizer: object

    def continue_ids(
        self, prefixes: list[list[int]], sampling: SamplingParams, seeds: list[int] | None = None
    ) -> list[Sample]: ...

    def update_weights(self, model, version: int | None = None) -> None: ...


def chat_prompt_ids(tokenizer, example: Example) -> list[int]:
    """Token ids of an example's prompt with the chat template and the assistant header
    (``example.chat_template_kwargs`` passed to the template); a ``raw_prompt`` is tokenized as it
    stands, special tokens included as TRL does for its standard format."""
    if example.raw_prompt:
        text = "".join(m["content"] for m in example.prompt)
        return tokenizer(text)["input_ids"]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            example.prompt, tokenize=False, add_generation_prompt=True, **example.chat_template_kwargs
        )
    else:
        text = "\n\n".join(m["content"] for m in example.prompt) + "\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer, example: Example) -> list[int]:
    """``chat_prompt_ids``, cached: tokenizing is a visible cost per step at small models."""
    messages = tuple(tuple(sorted(m.items())) for m in example.prompt)
    kwargs = json.dumps(example.chat_template_kwargs, sort_keys=True)  # config values: JSON by construction
    return list(_cached_prompt_ids(tokenizer, messages, example.raw_prompt, kwargs))


@functools.lru_cache(maxsize=65536)
def _cached_prompt_ids(tokenizer, messages: tuple, raw_prompt: bool, kwargs: str) -> tuple[int, ...]:
    prompt = [dict(m) for m in messages]
    example = Example("", prompt, "", raw_prompt=raw_prompt, chat_template_kwargs=json.loads(kwargs))
    return tuple(chat_prompt_ids(tokenizer, example))


def generate(
    engine: RolloutEngine, examples: list[Example], n: int, sampling: SamplingParams
) -> list[list[Completion]]:
    """n single-turn completions per example: [len(examples)][n], in example order."""
    prompts = [prompt_ids(engine.tokenizer, e) for e in examples]
    samples = engine.continue_ids([p for p in prompts for _ in range(n)], sampling)
    groups: list[list[Completion]] = [[] for _ in examples]
    for k, sample in enumerate(samples):
        i = k // n
        groups[i].append(
            Completion(
                example=examples[i],
                text=sample.text,
                prompt_ids=prompts[i],
                token_ids=sample.token_ids,
                logprobs=sample.logprobs,
                loss_mask=[1] * len(sample.token_ids),
                finish_reason=sample.finish_reason,
                budget=sampling.max_new_tokens,
            )
        )
    return groups


def trim_at_stop(tokenizer, ids: list[int], stop: list[str]) -> tuple[list[int], str]:
    """Cut after the first eos (kept, so the model learns to stop) or after the first token whose
    text completes a stop string, whichever comes first; the finish reason is "stop" or "length".

    A stop string may end inside a token (" " in " fourteenth"), so decoded text is checked,
    not token ids.
    """
    eos = tokenizer.eos_token_id
    end = ids.index(eos) + 1 if eos in ids else None
    if stop:
        for k in range(len(ids) if end is None else end - 1):
            text = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
            if any(s in text for s in stop):
                return ids[: k + 1], "stop"
    return (ids[:end], "stop") if end is not None else (ids, "length")


def cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.index(s) + len(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def make_engine(
    name: str, model, tokenizer, batch_size: int, onednn_weights: bool = True, precision: str = "fp32",
    fp32_logits: bool = False,
) -> RolloutEngine:  # fmt: skip
    """``onednn_weights``: the fast engine decodes with oneDNN-reordered weights on CPU (rlvr.cpu.onednn);
    ``precision``: fp32 or bf16 compute (rlvr.precision), resolved already (not auto); ``fp32_logits``:
    under bf16 the LM head still computes in fp32 (rlvr.precision.fp32_head)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"rollout precision must be resolved to fp32 or bf16, got {precision!r}")
    if name == "hf":
        from rlvr.rollout.hf import HFGenerateEngine

        return HFGenerateEngine(model, tokenizer, batch_size=batch_size, precision=precision, fp32_logits=fp32_logits)
    if name == "fast":
        from rlvr.rollout.fast import FastEngine

        return FastEngine(
            model, tokenizer, batch_size=batch_size, onednn_weights=onednn_weights, precision=precision,
            fp32_logits=fp32_logits,
        )  # fmt: skip
    raise ValueError(f"unknown rollout engine {name!r}")
