"""Demonstrations for the built-in tasks, generated offline and reproducibly (no download, no model).

A demonstrator is registered under a task's name in :data:`DEMONSTRATORS`, one signature for all:
``fn(example, tool) -> list[str]``, the model's turns for that example when the run's tool is
``tool`` (``tools.env``: ``none``, ``python``, ``search``). :func:`demonstration` plays the turns
against the run's real environment, so every observation between them is exactly what a rollout
would have received (the sandbox's ```` ```output ```` block, BM25's ``<result>`` block), and
masks it. Same example, same tool: same demonstration.

- ``arithmetic``, no tool: the chain of thought, products first, then left to right
  ("5 * 2 = 10, so 3 + 5 * 2 = 3 + 10. 3 + 10 = 13. The answer is \\boxed{13}.").
- ``arithmetic``, ``python`` (the ``tir`` recipe): a ```` ```python ```` block printing the
  expression, its output, the boxed answer.
- ``multihop``, ``search`` (the ``search`` recipe): one ``<search>`` per hop for the entity reached so
  far; after each result the fact that names the next entity, quoted from its document ("Zentrix was
  founded by Tala Voskin. <search>Tala Voskin</search>"), then the boxed answer.

Limits: the wording is a fixed template per task (a demonstration teaches the format and the
method, not style); other tasks have no demonstrator (give a file with ``demos.path``).
"""

import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from rlvr.errors import ConfigError
from rlvr.registry import Registry
from rlvr.tasks.arithmetic import evaluate
from rlvr.types import Demonstration, Example

Demonstrator = Callable[[Example, str], list[str]]
DEMONSTRATORS: Registry[Demonstrator] = Registry("demonstrator")  # trait ``tools``: the tools.env values it writes for
DirectAnswer = Callable[[Example], str]
DIRECT_ANSWERS: Registry[DirectAnswer] = Registry("direct answer")  # a task's no-think answer (demos.no_think)


def check_generator(task: str, tool: str, parts: list[dict] | None = None) -> None:
    """ConfigError, at load, unless ``task`` has a demonstrator that writes for ``tool`` (for a
    ``mixture``, each of its ``parts``)."""
    if task == "mixture":
        for part in parts or []:
            check_generator(str(part.get("name")), tool)
        return
    if task not in DEMONSTRATORS:
        raise ConfigError(
            f"task {task!r} has no generated demonstrations (tasks with them: {', '.join(DEMONSTRATORS.names())}); "
            "give a file with demos.path"
        )
    if tool not in DEMONSTRATORS.traits(task).get("tools", ("none",)):
        raise _unsupported(task, tool)


def demonstration(task: str, example: Example, tool: str, env=None, think=None, no_think: float = 0.0) -> Demonstration:
    """The generated demonstration of ``example``; ``env`` is a live environment of ``tool`` (reset
    for this example here) that answers every turn but the last. With ``think`` (a ThinkConfig,
    enabled) the one turn is written in the thinking format (:func:`thinking_turn`), skipping the
    thinking for a ``no_think`` share of the prompts (:func:`skips_thinking`)."""
    turns = DEMONSTRATORS.get(task)(example, tool)
    if think is not None and think.enabled:
        if len(turns) != 1:
            raise ConfigError(
                f"the {task!r} demonstrator wrote {len(turns)} turns; thinking demonstrations are single-turn"
            )
        skip = skips_thinking(example, no_think)
        direct = DIRECT_ANSWERS.get(task)(example) if skip and task in DIRECT_ANSWERS else None
        turns = [thinking_turn(turns[0], think, skip=skip, direct=direct)]
    segments: list[tuple[str, bool]] = []
    if env is not None:
        env.reset(example)
    for k, text in enumerate(turns):
        segments.append((text, True))
        if k < len(turns) - 1:
            if env is None:
                raise ConfigError(f"the {task!r} demonstrator wrote several turns but the run has no tool")
            observation = env.step(text).observation
            if observation:
                segments.append((observation, False))
    return Demonstration(example, tuple(segments), source=f"generated:{task}")


def skips_thinking(example: Example, share: float) -> bool:
    """Whether ``example``'s demonstration is written without thinking: a hash of its prompt against
    ``share``, so the choice is the same in every run and independent of the prompt's part of a
    mixture (Thinkless's warm-up, Fang et al. 2025, arXiv 2505.13379, trains both modes on every
    kind of problem, so RL starts with either mode likely and learns which pays where)."""
    from rlvr.demos import prompt_key

    draw = int.from_bytes(hashlib.sha256(prompt_key(example).encode()).digest()[:8], "big") / 2**64
    return draw < share


def thinking_turn(text: str, think, skip: bool = False, direct: str | None = None) -> str:
    """A worked answer in the thinking format, the whole assistant turn: the open marker, the
    reasoning (everything before the sentence that holds the last ``\\boxed``), the close marker,
    then that sentence: ``<think>\\n3 + 4 = 7. 7 - 2 = 5.\\n</think>\\nThe answer is \\boxed{5}.``.
    ``think.start`` opens the reasoning, as AdaptThink's forced thinking rows start. A one-sentence
    answer gets an empty thinking span. ``skip``: the no-think form, the close marker at once, as
    AdaptThink's no-think rows are forced to start, then ``direct`` (the task's answer without the
    reasoning, :data:`DIRECT_ANSWERS`) or else the answer sentence alone
    (``<think></think>\\n8 + 5 - 3 = 10. The answer is \\boxed{10}.``)."""
    cut = text.rfind("\\boxed")
    split = text.rfind(". ", 0, cut) if cut >= 0 else -1
    reasoning, answer = (text[: split + 1].strip(), text[split + 2 :].strip()) if split >= 0 else ("", text.strip())
    if skip:
        return f"{think.open}{think.close}\n{direct or answer}"
    return f"{think.open}{think.start}{reasoning}\n{think.close}\n{answer}"


def _unsupported(task: str, tool: str) -> ConfigError:
    return ConfigError(
        f"task {task!r} has no generated demonstrations with tools.env={tool}; give a file with demos.path"
    )


@DEMONSTRATORS.register("arithmetic", tools=("none", "python"))
def arithmetic_turns(example: Example, tool: str) -> list[str]:
    expression = example.meta["expression"]
    if tool == "python":
        code = f"```python\nprint({expression})\n```\n"
        return [code, f"The output is {example.answer}, so the answer is \\boxed{{{example.answer}}}."]
    if tool != "none":
        raise _unsupported("arithmetic", tool)
    return [" ".join(_worked_steps(expression)) + f" The answer is \\boxed{{{example.answer}}}."]


@DIRECT_ANSWERS.register("arithmetic")
def arithmetic_direct(example: Example) -> str:
    """The result stated at once, as a no-think answer: ``8 + 5 - 3 = 10. The answer is \\boxed{10}.``
    (a reasoning model's answer after an empty thinking span restates the solution in brief; for one
    operation this is the worked chain itself, for several it is computed in one go)."""
    return f"{example.meta['expression']} = {example.answer}. The answer is \\boxed{{{example.answer}}}."


@DIRECT_ANSWERS.register("mixture")
def mixture_direct(example: Example) -> str:
    task = example.meta["task"]
    return DIRECT_ANSWERS.get(task)(example) if task in DIRECT_ANSWERS else ""


def _worked_steps(expression: str) -> list[str]:
    """One sentence per operation: products first (left to right), then sums and differences."""
    parts = expression.split()
    numbers, ops = [int(p) for p in parts[::2]], parts[1::2]
    steps = []
    while "*" in ops:
        k = ops.index("*")
        product = numbers[k] * numbers[k + 1]
        before = _text(numbers, ops)
        numbers[k : k + 2], ops[k : k + 1] = [product], []
        steps.append(f"{parts_of(before, k)} = {product}, so {before} = {_text(numbers, ops)}.")
    while ops:
        value = evaluate((numbers[0], numbers[1]), (ops[0],))
        steps.append(f"{numbers[0]} {ops[0]} {numbers[1]} = {value}.")
        numbers[:2], ops[:1] = [value], []
    return steps


def parts_of(text: str, k: int) -> str:
    """The k-th binary operation of a spaced expression, as text: ``a op b``."""
    parts = text.split()
    return " ".join(parts[2 * k : 2 * k + 3])


def _text(numbers: list[int], ops: list[str]) -> str:
    out = [str(numbers[0])]
    for op, n in zip(ops, numbers[1:], strict=True):
        out += [op, str(n)]
    return " ".join(out)


@DEMONSTRATORS.register("mixture", tools=("none", "python", "search"))
def mixture_turns(example: Example, tool: str) -> list[str]:
    """The demonstration of the part the example came from (``meta["task"]``, set by the mixture task)."""
    return DEMONSTRATORS.get(example.meta["task"])(example, tool)


@DEMONSTRATORS.register("multihop", tools=("search",))
def multihop_turns(example: Example, tool: str) -> list[str]:
    """One search per hop for the entity reached so far; after each result, the fact that names the
    next entity, quoted from its document (the question's ``supporting`` documents), then the answer."""
    if tool != "search":
        raise _unsupported("multihop", tool)
    path = example.meta["path"]  # entity names from the question's start to the answer
    documents = _corpus_texts(str(example.meta["corpus"]))
    supporting = zip(example.meta["supporting"], path[1:], strict=True)  # one document per hop
    facts = [_sentence_naming(documents[doc], name) for doc, name in supporting]
    turns = [f"<search>{path[0]}</search>"]
    turns += [f"{fact} <search>{name}</search>" for fact, name in zip(facts[:-1], path[1:-1], strict=True)]
    return [*turns, f"{facts[-1]} The answer is \\boxed{{{path[-1]}}}."]


@functools.lru_cache(maxsize=8)
def _corpus_texts(corpus: str) -> dict[str, str]:
    from rlvr.tools.search import read_corpus

    return {doc_id: text for doc_id, _, text in read_corpus(Path(corpus))}


def _sentence_naming(text: str, name: str) -> str:
    """The first sentence of ``text`` that mentions ``name`` (a fact document states one fact first)."""
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", text) if s.strip()]
    return next((s for s in sentences if name in s), sentences[0] if sentences else text)
