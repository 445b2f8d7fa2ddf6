"""Demonstrations: worked answers for supervised fine-tuning and for SFT+RL mixing.

A :class:`rlvr.types.Demonstration` is a prompt plus the assistant's continuation as text pieces,
trained or not (tool output is not). They come from a file (:mod:`rlvr.demos.files`: chat
``messages``, or ``prompt`` + ``completion`` as TRL writes them) or from the task's own generator
(:mod:`rlvr.demos.generate`: arithmetic with its chain of thought, Python tool transcripts for
``tir``, search transcripts for ``search``), never from a download.

:func:`render` turns one into a :class:`rlvr.types.Completion`, the record the learner already
trains on: the prompt through the same chat template and environment instructions as the run's
rollouts, each piece tokenized on its own (as the multi-turn rollout tokenizes an observation),
``loss_mask`` 0 on untrained pieces, ``origin="demo"``. So SFT, the auxiliary SFT loss, LUFFY's
off-policy group members and Prefix-RFT's prefixes all go through the one update of
:mod:`rlvr.learner.update`; there is no second trainer.

:class:`DemoBank` holds a run's demonstrations, finds the one for a training prompt (by the text
of its last user message, so a file's demonstrations match the task's prompts), and keeps each
rendering once.
"""

from collections.abc import Callable
from dataclasses import replace

from rlvr.rollout import chat_prompt_ids
from rlvr.types import Completion, Demonstration, Example, Messages, Turn

DEFAULT_GENERATED = 256  # generated demonstrations when demos.size is not set


def prompt_key(example: Example) -> str:
    """What matches a demonstration to a prompt: the last user message's text, stripped."""
    users = [m["content"] for m in example.prompt if m["role"] == "user"]
    return (users[-1] if users else example.prompt[-1]["content"]).strip()


def render(
    tokenizer, demo: Demonstration, reset: Callable[[Example], Messages] | None = None, think=None
) -> Completion:
    """``demo`` as a completion the learner trains on. ``reset`` is the run's environment's
    ``reset`` (its tool instructions in the prompt), so SFT conditions on the prompt RL sees. With
    ``think`` (the run's ThinkConfig, enabled) the prompt is the thinking rollouts' own: the think
    instruction appended and the open marker prefilled, which the demonstration then does not
    repeat (a leading open marker in its text is dropped)."""
    example = demo.example
    if think is not None and think.enabled:
        demo, prompt = _thinking(tokenizer, demo, reset, think)
    else:
        prompt = chat_prompt_ids(tokenizer, replace(example, prompt=reset(example)) if reset else example)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained in demo.segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(trained)] * len(piece)
    if demo.ends_turn:
        ids.append(tokenizer.eos_token_id)
        mask.append(1)
    turns = _turns(demo.segments) if any(not trained for _, trained in demo.segments) else []
    return Completion(
        example, demo.text, prompt, ids, [0.0] * len(ids), mask, "stop", turns, budget=None, origin="demo"
    )


def _thinking(tokenizer, demo: Demonstration, reset, think) -> tuple[Demonstration, list[int]]:
    """(the demonstration, its prompt ids) as a thinking rollout sees them (rlvr.rollout.think)."""
    from rlvr.rollout.think import ends_with_open, opened_prompt, with_instruction

    example = replace(demo.example, prompt=reset(demo.example)) if reset else demo.example
    prompt = opened_prompt(tokenizer, with_instruction(example, think), think)
    (first, trained), *rest = demo.segments
    if ends_with_open(tokenizer, prompt, think) and first.startswith(think.open):
        demo = replace(demo, segments=((first[len(think.open) :], trained), *rest))
    return demo, prompt


def _turns(segments) -> list[Turn]:
    """The transcript as turns: each model-written piece with the untrained text after it."""
    turns: list[Turn] = []
    for text, trained in segments:
        if trained or not turns:
            turns.append(Turn(text if trained else "", "" if trained else text))
        else:
            last = turns[-1]
            turns[-1] = Turn(last.text, last.observation + text, tool=last.tool or "demo")
    return turns


class DemoBank:
    """A run's demonstrations: ``demos[i]`` built on first use by ``build(i)``, rendered once.

    ``build`` is how the demonstrations come: read from a file (all known up front) or generated
    by the task's demonstrator (each on first use, as a generator may run a tool).
    """

    def __init__(
        self, examples: list[Example], build: Callable[[int], Demonstration], tokenizer, reset=None,
        max_tokens: int = 0, close: Callable[[], None] | None = None, budget: int | None = None, think=None,
    ) -> None:  # fmt: skip
        self.examples = examples  # [D] the prompt each demonstration answers
        self._build = build
        self._tokenizer = tokenizer
        self._reset = reset
        self._max_tokens = max_tokens  # a longer rendering is cut there (finish reason "length"); 0: never
        self._close = close
        self._budget = budget  # the rollouts' token budget, given to every rendering
        self._think = think  # the run's ThinkConfig: prompts render as its thinking rollouts' do
        self._demos: dict[int, Demonstration] = {}
        self._rendered: dict[int, Completion] = {}
        self._for_examples: dict[tuple[int, str], Completion] = {}
        self._index = {}
        for i, example in enumerate(examples):
            self._index.setdefault(prompt_key(example), i)

    def __len__(self) -> int:
        return len(self.examples)

    def demo(self, i: int) -> Demonstration:
        if i not in self._demos:
            self._demos[i] = self._build(i)
        return self._demos[i]

    def completion(self, i: int) -> Completion:
        """Demonstration ``i`` rendered (cached); the completion's example is the demonstration's."""
        if i not in self._rendered:
            self._rendered[i] = self._finish(render(self._tokenizer, self.demo(i), self._reset, self._think))
        return self._rendered[i]

    def _finish(self, c: Completion) -> Completion:
        """The rollouts' token budget (length rewards read it), and a rendering over ``max_tokens`` cut
        there: tokens, text (decoded again) and finish reason "length"."""
        c = replace(c, budget=self._budget)
        if not self._max_tokens or len(c.token_ids) <= self._max_tokens:
            return c
        n = self._max_tokens
        text = self._tokenizer.decode(c.token_ids[:n], skip_special_tokens=True)
        return replace(c, text=text, token_ids=c.token_ids[:n], logprobs=c.logprobs[:n], loss_mask=c.loss_mask[:n],
                       turns=[], finish_reason="length")  # fmt: skip

    def close(self) -> None:
        """Stop what generating needed (a tool's sandbox)."""
        if self._close is not None:
            self._close()

    def __enter__(self) -> "DemoBank":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def find(self, example: Example) -> int | None:
        """The demonstration for ``example``'s prompt, if the bank has one."""
        return self._index.get(prompt_key(example))

    def matched(self, examples: list[Example]) -> int:
        """How many distinct prompts of ``examples`` have a demonstration."""
        return len({prompt_key(e) for e in examples if self.find(e) is not None})

    def for_example(self, example: Example) -> Completion | None:
        """The demonstration for ``example``'s prompt rendered on the run's own example (its prompt,
        template settings and environment instructions condition it, as the group's rollouts; its
        answer and meta score it), or None when the bank has none."""
        i = self.find(example)
        if i is None:
            return None
        key = (i, example.id)
        if key not in self._for_examples:
            demo = replace(self.demo(i), example=example)
            self._for_examples[key] = self._finish(render(self._tokenizer, demo, self._reset, self._think))
        return self._for_examples[key]


def make_bank(cfg, train_set: list[Example], tokenizer) -> DemoBank:
    """The run's demonstrations: ``demos.path`` read (the first ``demos.size``; all by default), or the
    task's generator on the first ``demos.size`` (256 by default) distinct train prompts. Prompts render
    through the run's environment (``tools.env``) as its rollouts do."""
    from rlvr.errors import ConfigError

    env = None
    if cfg.tools.env != "none":
        from rlvr.envs.rollout import ENVS

        env = ENVS.get(cfg.tools.env)(cfg.tools)
    reset = env.reset if env is not None else None
    close = env.close if env is not None else None
    budget = cfg.tools.max_total_tokens if cfg.tools.env != "none" else cfg.rollout.max_new_tokens
    size = cfg.demos.size
    if cfg.demos.path:
        from rlvr.demos.files import read_demonstrations

        demos = read_demonstrations(cfg.demos.path, tokenizer)
        if size is not None and size > len(demos):
            raise ConfigError(f"demos.size={size} but {cfg.demos.path} holds {len(demos)} demonstrations")
        demos = demos[:size] if size is not None else demos
        return DemoBank(
            [d.example for d in demos], demos.__getitem__, tokenizer, reset, cfg.sft.max_tokens, close, budget,
            think=cfg.think,
        )  # fmt: skip
    from rlvr.demos.generate import check_generator, demonstration

    task = cfg.task.name
    check_generator(task, cfg.tools.env, cfg.task.params().get("parts"))
    examples = _distinct(train_set, DEFAULT_GENERATED if size is None else size)
    return DemoBank(
        examples, lambda i: demonstration(task, examples[i], cfg.tools.env, env, cfg.think, cfg.demos.no_think),
        tokenizer, reset, cfg.sft.max_tokens, close, budget, think=cfg.think,
    )  # fmt: skip


def _distinct(examples: list[Example], size: int) -> list[Example]:
    out, seen = [], set()
    for example in examples:
        key = prompt_key(example)
        if key not in seen:
            seen.add(key)
            out.append(example)
            if len(out) == size:
                break
    return out
