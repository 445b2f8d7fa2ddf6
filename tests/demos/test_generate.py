"""Generated demonstrations: hand-checked worked solutions, tool transcripts played against the real
environments, reproducible, and written by `rlvr demos` as a file that reads back to the same tokens."""

import re

import pytest

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.demos import make_bank
from rlvr.demos.generate import arithmetic_turns
from rlvr.errors import ConfigError
from rlvr.models import tiny_random
from rlvr.rewards import REWARDS
from rlvr.tasks import make_task
from rlvr.types import Example


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_random(0)[1]


def example(expression: str, answer: str) -> Example:
    return Example("e", [{"role": "user", "content": f"What is {expression}?"}], answer, {"expression": expression})


@pytest.mark.parametrize(
    ("expression", "answer", "text"),
    [
        ("3 + 5", "8", "3 + 5 = 8. The answer is \\boxed{8}."),
        (
            "3 + 5 * 2",
            "13",
            "5 * 2 = 10, so 3 + 5 * 2 = 3 + 10. 3 + 10 = 13. The answer is \\boxed{13}.",
        ),
        (
            "70 - 42 * 9",
            "-308",
            "42 * 9 = 378, so 70 - 42 * 9 = 70 - 378. 70 - 378 = -308. The answer is \\boxed{-308}.",
        ),
        (
            "2 * 3 * 4 - 5",
            "19",
            "2 * 3 = 6, so 2 * 3 * 4 - 5 = 6 * 4 - 5. 6 * 4 = 24, so 6 * 4 - 5 = 24 - 5. 24 - 5 = 19. "
            "The answer is \\boxed{19}.",
        ),
    ],
)
def test_arithmetic_chain_of_thought(expression, answer, text):
    assert arithmetic_turns(example(expression, answer), "none") == [text]


def bank_for(recipe: str, tokenizer, *overrides: str):
    config = load_config(recipe, ["model.name=tiny-random", "demos.size=6", *overrides])
    task = make_task(config.task.name, **config.task.params())
    return config, task, make_bank(config, task.split("train"), tokenizer)


@pytest.mark.parametrize("recipe", ["sft", "tir", "search"])
def test_every_generated_demonstration_is_correct(recipe, tokenizer):
    config, _, bank = bank_for(recipe, tokenizer)
    verifier = REWARDS.get(config.rewards[0].name)
    with bank:
        for i in range(len(bank)):
            c = bank.completion(i)
            assert verifier(c, c.example) == 1.0, c.text
            assert REWARDS.get("boxed_format")(c, c.example) == 1.0


def test_tir_transcripts_hold_the_sandboxs_real_output(tokenizer):
    with bank_for("tir", tokenizer)[2] as bank:
        c = bank.completion(0)
        code, observation, answer = bank.demo(0).segments
        assert code[0].startswith("```python\nprint(") and code[0].endswith("\n```\n") and code[1]
        assert observation == (f"```output\n{c.example.answer}\n```\n", False)  # masked: the env wrote it
        assert answer[1] and c.turns[0].observation == observation[0]
        assert "You may run Python" in tokenizer.decode(c.prompt_ids)  # the env's instructions, as in a rollout


def test_search_transcripts_retrieve_each_hop(tokenizer):
    with bank_for("search", tokenizer)[2] as bank:
        demo = bank.demo(0)
        path = demo.example.meta["path"]
        observations = [text for text, trained in demo.segments if not trained]
        assert len(observations) == len(path) - 1  # one search per hop
        for hop, result in enumerate(observations):
            assert result.startswith("\n<result>\n") and path[hop + 1] in result  # the next entity is retrieved
        written = [text for text, trained in demo.segments if trained]
        for hop in range(1, len(path)):  # after each result: the fact naming the next entity, as its document says
            fact = written[hop].split(" <search>")[0].split(" The answer is")[0]
            assert path[hop - 1] in fact and path[hop] in fact and fact.endswith("."), fact
        assert written[-1].endswith(f"The answer is \\boxed{{{path[-1]}}}.")


def test_generation_is_reproducible(tokenizer):
    with bank_for("tir", tokenizer)[2] as first, bank_for("tir", tokenizer)[2] as second:
        assert [first.demo(i) for i in range(6)] == [second.demo(i) for i in range(6)]


def test_a_task_without_a_demonstrator_says_so(tokenizer):
    with pytest.raises(ConfigError, match="task 'countdown' has no generated demonstrations"):
        bank_for("grpo", tokenizer, "task.name=countdown")
    with pytest.raises(ConfigError, match="no generated demonstrations with tools.env=python"):
        bank_for("search", tokenizer, "tools.env=python")


@pytest.mark.parametrize("recipe", ["tir", "search"])
def test_rlvr_demos_writes_a_file_that_reads_back_to_the_same_tokens(tmp_path, tokenizer, recipe):
    out = tmp_path / f"{recipe}.jsonl"
    assert main(["demos", recipe, "model.name=tiny-random", "demos.size=4", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4
    with pytest.raises(ConfigError, match=re.escape(f"demos.size=5 but {out} holds 4 demonstrations")):
        bank_for(recipe, tokenizer, f"demos.path={out}", "demos.size=5")
    generated = bank_for(recipe, tokenizer, "demos.size=4")[2]
    from_file = bank_for(recipe, tokenizer, f"demos.path={out}", "demos.size=4")[2]  # search: its corpus in meta
    with generated, from_file:
        for i in range(4):
            a, b = generated.completion(i), from_file.completion(i)
            assert (a.prompt_ids, a.token_ids, a.loss_mask) == (b.prompt_ids, b.token_ids, b.loss_mask)
            assert b.example.answer == a.example.answer and b.example.meta.get("corpus") == a.example.meta.get("corpus")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.name=countdown", "sft.coef=0.1"], "demos: task 'countdown' has no generated demonstrations"),
        (["stages=[{kind: sft, steps: 1}]", "demos.path=/no/such.jsonl"], "demonstrations file not found"),
        (["sft.group_demos=1", "demos.size=0"], "demos.size=0: Input should be greater than or equal to 1"),
        (["sft.group_demos=4", "sft.prefix_rollouts=4"], "must leave at least one sampled rollout"),
        (["sft.prefix_rollouts=1", "tools.env=python"], "single-turn only"),
        (["stages=[{kind: sft, steps: 1}]", "train.steps=3"], "the stages' steps decide the run's length"),
        (["stages=[{kind: sft, steps: 0}]"], "stages.0.steps=0"),
    ],
)
def test_demonstration_settings_are_checked_at_load(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("grpo", overrides)


def test_the_sft_recipes_own_command_reads_a_whole_small_file(tmp_path, tokenizer):
    """`rlvr sft demos.path=my_demos.jsonl` (the recipe header's command) on a file of 4: all 4 are used."""
    out = tmp_path / "my_demos.jsonl"
    assert main(["demos", "sft", "model.name=tiny-random", "demos.size=4", "--out", str(out)]) == 0
    config = load_config("sft", ["model.name=tiny-random", f"demos.path={out}"])
    task = make_task(config.task.name, **config.task.params())
    with make_bank(config, task.split("train"), tokenizer) as bank:
        assert len(bank) == 4


@pytest.mark.parametrize(
    ("text", "turn"),
    [
        (
            "1 + 8 = 9. 9 + 2 = 11. The answer is \\boxed{11}.",
            "<think>\n1 + 8 = 9. 9 + 2 = 11.\n</think>\nThe answer is \\boxed{11}.",
        ),
        ("The answer is \\boxed{4}.", "<think>\n\n</think>\nThe answer is \\boxed{4}."),
    ],
)
def test_a_worked_answer_in_the_thinking_format(text, turn):
    from rlvr.config_think import ThinkConfig
    from rlvr.demos.generate import thinking_turn

    assert thinking_turn(text, ThinkConfig(enabled=True)) == turn


def test_thinking_demonstrations_render_as_the_thinking_rollouts_prompt(tokenizer):
    """With think on, a demonstration's prompt is the rollout's (instruction appended, open marker
    prefilled, rlvr.rollout.think.opened_prompt) and its text continues after the marker, never
    repeating it; a mixture's demonstrations come from each part's own demonstrator."""
    from rlvr.rollout.think import opened_prompt, with_instruction

    config, task, bank = bank_for(
        "adapt_think", tokenizer, "demos.size=4", "demos.no_think=0", "think.instruction= Think first."
    )
    for i in range(4):
        c = bank.completion(i)
        rollout_prompt = opened_prompt(tokenizer, with_instruction(c.example, config.think), config.think)
        assert c.prompt_ids == rollout_prompt
        assert tokenizer.decode(c.prompt_ids).endswith("Think first.<|im_end|>\n<|im_start|>assistant\n<think>")
        assert c.text.startswith("\n") and "<think>" not in c.text and c.text.count("</think>") == 1
        assert c.token_ids == tokenizer(c.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    hard = bank.completion(1)  # the mixture interleaves easy, hard, easy, hard
    expression = hard.example.meta["expression"]
    operations = len(expression.split()) // 2
    assert hard.example.meta["difficulty"] == "hard" and operations >= 2
    assert hard.text.count(" = ") == operations  # one worked step each
    assert hard.text.startswith(f"\n{' '.join(expression.split()[:3])} = ")
    overrides = (
        "demos.size=4",
        "demos.no_think=0",
        "think.enabled=false",
        "think.no_think_frac=0",
        "rewards=[{name: math}]",
    )
    plain = bank_for("adapt_think", tokenizer, *overrides)[2].completion(1)
    assert plain.text.startswith(expression.split()[0]) and "<think>" not in tokenizer.decode(plain.prompt_ids)


def test_a_file_demonstration_with_the_open_marker_is_not_doubled(tmp_path, tokenizer):
    out = tmp_path / "think.jsonl"
    assert (
        main(["demos", "adapt_think", "model.name=tiny-random", "demos.size=2", "demos.no_think=0", "--out", str(out)])
        == 0
    )
    assert all('"completion": "<think>\\n' in line for line in out.read_text().splitlines())  # the whole turn
    generated = bank_for("adapt_think", tokenizer, "demos.size=2", "demos.no_think=0")[2]
    from_file = bank_for("adapt_think", tokenizer, f"demos.path={out}", "demos.size=2")[2]
    for i in range(2):
        a, b = generated.completion(i), from_file.completion(i)
        assert (a.prompt_ids, a.token_ids, a.text) == (b.prompt_ids, b.token_ids, b.text)
    overrides = (f"demos.path={out}", "demos.size=2", "think.prefill=false", "think.no_think_frac=0")
    unprefilled = bank_for("adapt_think", tokenizer, *overrides)[2].completion(0)
    assert unprefilled.text.startswith("<think>\n")  # no marker in the prompt: the demonstration keeps its own


def test_a_mixture_part_without_a_demonstrator_is_named_at_load():
    parts = "[{name: arithmetic, difficulty: easy}, {name: countdown, difficulty: hard}]"
    with pytest.raises(ConfigError, match="task 'countdown' has no generated demonstrations"):
        load_config("grpo", ["task.name=mixture", f"task.parts={parts}", "stages=[{kind: sft, steps: 1}]"])


def test_a_share_of_thinking_demonstrations_skips_thinking_on_every_part(tokenizer):
    """demos.no_think (Thinkless's warm-up on both modes): the choice is a hash of the prompt, so it is
    the same in every run, near the share asked, and falls on easy and hard prompts alike; a skipped
    demonstration states the result at once (the task's direct answer)."""
    _, _, bank = bank_for("adapt_think", tokenizer, "demos.size=200", "demos.no_think=0.5")
    skipped = {"easy": 0, "hard": 0}
    for i in range(200):
        c = bank.completion(i)
        expression, answer = c.example.meta["expression"], c.example.answer
        if c.text.startswith("</think>"):
            assert c.text == f"</think>\n{expression} = {answer}. The answer is \\boxed{{{answer}}}."
            skipped[c.example.meta["difficulty"]] += 1
        else:
            assert c.text.startswith("\n") and c.text.count("</think>") == 1
    assert 35 <= skipped["easy"] <= 65 and 35 <= skipped["hard"] <= 65, skipped
    again = bank_for("adapt_think", tokenizer, "demos.size=200", "demos.no_think=0.5")[2]
    assert [again.completion(i).text for i in range(200)] == [bank.completion(i).text for i in range(200)]
    none = bank_for("adapt_think", tokenizer, "demos.size=50", "demos.no_think=0")[2]
    assert not any(none.completion(i).text.startswith("</think>") for i in range(50))


def test_demos_no_think_needs_thinking_on():
    with pytest.raises(ConfigError, match="demos.no_think writes generated demonstrations that skip thinking"):
        load_config("adapt_think", ["demos.no_think=0.5", "think.enabled=false", "think.no_think_frac=0"])
