"""Thinking rollouts (rlvr.rollout.think) on a scripted engine with a character tokenizer: where the
budget cuts, what is forced, which tokens are trained and with which log-probs."""

import math

import pytest

from rlvr.config import load_config
from rlvr.config_think import ThinkConfig
from rlvr.errors import ConfigError
from rlvr.evaluate import evaluate
from rlvr.rollout import Sample, SamplingParams
from rlvr.rollout.think import exit_positions, is_no_think, think_generate, thinking_length
from rlvr.types import Example

EOS = 1
FORCED = "\n</think>\nThe final answer is \\boxed{"


class CharTokenizer:
    """One token per character (id = code point); id 1 is eos; no chat template."""

    eos_token_id = EOS

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == EOS))


class ScriptedEngine:
    """Continues a prefix with ``script(prefix_text)`` (a trailing "$" is eos), cut by the sampling's
    budget and stop strings like a real engine; every sampled token has log-prob -0.5."""

    def __init__(self, script):
        self.tokenizer = CharTokenizer()
        self.script = script
        self.calls: list[list[str]] = []

    def continue_ids(self, prefixes, sampling, seeds=None):
        texts = [self.tokenizer.decode(p) for p in prefixes]
        self.calls.append(texts)
        out = []
        for text in texts:
            ids = [EOS if c == "$" else ord(c) for c in self.script(text)]
            finish = "length"
            for k in range(min(len(ids), sampling.max_new_tokens)):
                piece = self.tokenizer.decode(ids[: k + 1])
                if ids[k] == EOS or any(s in piece for s in sampling.stop):
                    ids, finish = ids[: k + 1], "stop"
                    break
            else:
                ids = ids[: sampling.max_new_tokens]
            out.append(Sample(ids, [-0.5] * len(ids), finish, self.tokenizer.decode(ids)))
        return out

    def update_weights(self, model, version=None):
        pass


def example(i: int = 0, difficulty: str | None = None) -> Example:
    meta = {} if difficulty is None else {"difficulty": difficulty}
    return Example(f"q{i}", [{"role": "user", "content": f"Q{i}"}], "7", meta)


def answering(thinking: str):
    """Thinks ``thinking`` when asked to think; answers "7}$" once the thinking is closed."""
    return lambda text: "7}$" if text.endswith(("{", "</think>")) else thinking


def think(**keys) -> ThinkConfig:
    return ThinkConfig(enabled=True, **keys)


SAMPLING = SamplingParams(max_new_tokens=32)


def test_a_thinking_cut_at_the_budget_gets_the_forced_answer_masked_with_log_prob_zero():
    engine = ScriptedEngine(answering("abcdefghij"))
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think(budget=4))
    c = group[0]
    assert c.text == "abcd" + FORCED + "7}"
    assert c.forced_answer and c.think_budget == 4 and c.finish_reason == "stop"
    assert c.budget == 4 + len(FORCED) + 32  # the whole response's: thinking, forced text, answer_tokens
    n = len(FORCED)
    assert c.loss_mask == [1] * 4 + [0] * n + [1] * 3  # "7", "}", eos
    assert c.logprobs == [-0.5] * 4 + [0.0] * n + [-0.5] * 3
    assert engine.calls[0] == ["Q0\n<think>"]  # the prefilled open marker is prompt side
    assert CharTokenizer().decode(c.prompt_ids) == "Q0\n<think>"


def test_train_forced_puts_the_forced_tokens_in_the_loss():
    engine = ScriptedEngine(answering("abcdefghij"))
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think(budget=4, train_forced=True))
    assert group[0].loss_mask == [1] * len(group[0].token_ids)


def test_a_thinking_closed_within_budget_samples_its_answer_without_forcing():
    engine = ScriptedEngine(answering("ab</think>"))
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think(budget=16, answer_tokens=2))
    c = group[0]
    assert c.text == "ab</think>7}" and not c.forced_answer
    assert c.finish_reason == "length"  # the answer hit answer_tokens=2 before its eos
    assert c.loss_mask == [1] * len(c.token_ids)


def test_eos_inside_the_thinking_ends_the_row_with_one_call():
    engine = ScriptedEngine(lambda text: "ab$")
    (group,) = think_generate(engine, [example()], 2, SAMPLING, think(budget=16))
    assert [c.text for c in group] == ["ab", "ab"] and len(engine.calls) == 1


def test_without_a_budget_the_rollout_is_one_plain_sample():
    engine = ScriptedEngine(lambda text: "ab</think>cd$")
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think())
    assert group[0].text == "ab</think>cd" and len(engine.calls) == 1 and group[0].budget == 32


def test_hbpo_subgroups_announce_their_budgets_on_the_prompt_side():
    engine = ScriptedEngine(lambda text: "x$")
    (group,) = think_generate(engine, [example()], 4, SAMPLING, think(budgets=[8, 16]))
    assert [c.think_budget for c in group] == [8, 8, 16, 16]
    announced = [CharTokenizer().decode(c.prompt_ids) for c in group]
    assert announced[0].endswith("<think> I will answer the question within 8 tokens.\n")
    assert announced[3].endswith("within 16 tokens.\n")
    assert all(c.loss_mask == [1, 1] for c in group)  # the announcement is not trained


def test_adaptthink_forces_modes_with_the_proposals_log_prob_on_the_first_token():
    engine = ScriptedEngine(lambda text: "7}$" if text.endswith("</think>") else "abc$")
    (group,) = think_generate(engine, [example()], 4, SAMPLING, think(no_think_frac=0.5))
    skipped, thought = group[:2], group[2:]
    for c in skipped:
        assert c.text == "</think>7}" and is_no_think(c.text, "<think>", "</think>")
        assert c.logprobs[:8] == [math.log(0.5)] + [0.0] * 7 and c.loss_mask[:8] == [1] * 8
    for c in thought:
        assert c.text == "\nabc" and not is_no_think(c.text, "<think>", "</think>")
        assert c.logprobs[0] == pytest.approx(math.log(0.5)) and c.loss_mask[0] == 1
    assert not is_no_think("</think>7 + 7 = 14.\n</think>\nThe answer", "<think>", "</think>")  # closed twice
    assert is_no_think("<think></think>\nThe answer", "<think>", "</think>")
    assert is_no_think("<think></think>\n The answer \n", "<think>", "</think>", max_chars=10)  # 10 once stripped
    assert not is_no_think("<think></think>\nThe answers", "<think>", "</think>", max_chars=10)
    frac = think_generate(ScriptedEngine(lambda t: "x$"), [example()], 4, SAMPLING, think(no_think_frac=0.25))[0]
    assert [c.logprobs[0] for c in frac] == pytest.approx([math.log(0.25)] + [math.log(0.75)] * 3)


def test_sgrpo_exits_early_from_one_path_with_its_log_probs_and_the_path_last():
    engine = ScriptedEngine(answering("abcdefgh</think>"))
    (group,) = think_generate(engine, [example()], 4, SAMPLING, think(early_exits=True, budget=24))
    path = group[-1]
    assert path.text == "abcdefgh</think>7}" and path.think_budget == 8 and not path.forced_answer
    exits = group[:-1]
    positions = [c.think_budget for c in exits]
    assert positions == sorted(positions) and len(set(positions)) == 3 and all(1 <= p <= 8 for p in positions)
    for c, p in zip(exits, positions, strict=True):
        assert c.text == "abcdefgh"[:p] + FORCED + "7}" and c.forced_answer
        assert c.logprobs[:p] == [-0.5] * p and c.loss_mask[p : p + len(FORCED)] == [0] * len(FORCED)
    assert len(engine.calls[0]) == 1  # one path sampled, not four


def test_sgrpo_never_exits_after_a_path_that_ended_without_closing():
    engine = ScriptedEngine(lambda text: "7}$" if text.endswith("{") else "abc$")
    (group,) = think_generate(engine, [example()], 8, SAMPLING, think(early_exits=True, budget=24))
    assert group[-1].text == "abc" and group[-1].think_budget == 3  # eos is not thinking
    assert all(1 <= c.think_budget <= 3 and c.text == "abc"[: c.think_budget] + FORCED + "7}" for c in group[:-1])
    assert all(EOS not in c.token_ids[: c.think_budget + 1] for c in group[:-1])


def test_exit_positions_are_seeded_by_the_path_and_repeat_only_when_short():
    assert exit_positions([5, 6, 7], 10, 3) == exit_positions([5, 6, 7], 10, 3)
    assert exit_positions([5, 6, 7], 10, 3) != exit_positions([5, 6, 8], 10, 3)
    assert len(set(exit_positions([5, 6, 7], 10, 9))) == 9  # distinct while there is room
    assert sorted(set(exit_positions([5], 2, 3))) in ([1, 2], [1], [2])  # fewer positions than exits: repeats
    assert exit_positions([5], 0, 2) == [0, 0]  # no thinking: exit straight after the prompt


def test_thinking_length_stops_before_the_close_marker_a_stop_string_or_eos():
    tok = CharTokenizer()
    assert thinking_length(tok, tok("abc</think>7")["input_ids"], "</think>") == 3
    assert thinking_length(tok, tok("abcdef")["input_ids"], "</think>") == 6
    assert thinking_length(tok, tok("abcdef")["input_ids"] + [EOS], "</think>") == 6
    assert thinking_length(tok, tok("abcSTOP")["input_ids"], "</think>", ["STOP"]) == 3


def test_a_stop_string_ends_the_thinking_without_an_answer():
    engine = ScriptedEngine(answering("abSTOPcdefgh"))
    stopping = SamplingParams(max_new_tokens=32, stop=["STOP"])
    (group,) = think_generate(engine, [example()], 1, stopping, think(budget=16))
    assert group[0].text == "abSTOP" and not group[0].forced_answer and len(engine.calls) == 1


def test_the_open_marker_is_not_prefilled_twice():
    class Templated(CharTokenizer):
        chat_template = "r1"

        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
            return messages[-1]["content"] + "<think>\n"

    engine = ScriptedEngine(lambda text: "x$")
    engine.tokenizer = Templated()
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think())
    assert engine.tokenizer.decode(group[0].prompt_ids) == "Q0<think>\n"


def test_eval_lets_the_model_choose_and_reports_by_difficulty():
    engine = ScriptedEngine(lambda text: "</think>\\boxed{7}$" if "Q0" in text else "long\\boxed{8}$")
    result = evaluate(
        engine, [example(0, "easy"), example(1, "hard")], "math", SAMPLING, 1, None, think(no_think_frac=0.5)
    )
    m = result.metrics
    assert m["eval/no_think_rate/easy"] == 1.0 and m["eval/no_think_rate/hard"] == 0.0
    assert m["eval/accuracy/easy"] == 1.0 and m["eval/accuracy/hard"] == 0.0
    assert m["eval/no_think_rate"] == 0.5
    capped = evaluate(  # "\\boxed{7}" after the marker is 9 characters: over a cap of 8 it is thinking
        engine, [example(0, "easy")], "math", SAMPLING, 1, None, think(no_think_frac=0.5, no_think_max_chars=8)
    ).metrics
    assert capped["eval/no_think_rate/easy"] == 0.0 and capped["eval/no_think_rate"] == 0.0
    m = evaluate(engine, [example(0, "easy")], "math", SAMPLING, 1, None, think(no_think_max_chars=9)).metrics
    assert m["eval/no_think_rate/easy"] == 1.0 and m["eval/no_think_rate"] == 1.0


def test_instruction_is_appended_with_markers():
    engine = ScriptedEngine(lambda text: "x$")
    (group,) = think_generate(engine, [example()], 1, SAMPLING, think(instruction=" Think in {open} {close}."))
    assert group[0].example.prompt[-1]["content"] == "Q0 Think in <think> </think>."


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["think.budget=8"], "need think.enabled"),
        (["think.enabled=true", "think.budgets=[8, 16, 32]"], "must divide rollout.group_size"),
        (["think.enabled=true", "think.no_think_frac=0.5", "think.early_exits=true"], "choose one"),
        (["think.enabled=true", "think.no_think_frac=0.01"], "each group needs both modes"),
        (["think.enabled=true", "think.budget=999"], "above rollout.max_new_tokens"),
        (["think.enabled=true", "tools.env=python", "tools.max_total_tokens=512"], "single-turn"),
        (
            [
                "think.enabled=true",
                "think.budgets=[8, 16]",
                "algo.advantage={name: hbpo, budgets: [8], max_tokens: 16}",
            ],
            "must be think.budgets",
        ),
        (["algo.advantage={name: hbpo, budgets: [8], max_tokens: 16}"], "must be think.budgets"),
        (
            ["think.enabled=true", "think.close=</reason>", "rewards=[{name: math}, {name: think_format}]"],
            r"rewards\[1\] \(think_format\) reads the close marker '</think>' but think.close is '</reason>'",
        ),
        (["think.enabled=true", "sft.group_demos=1"], "do not take demonstrations"),
        (
            ["think.enabled=true", "think.no_think_max_chars=40", "rewards=[{name: adapt_think}]"],
            r"rewards\[0\] \(adapt_think\) has no_think_max_chars=None but think.no_think_max_chars is 40",
        ),
        (["think.enabled=true", "think.prefill=false", "think.no_think_frac=0.5"], "need think.prefill"),
        (
            ["think.enabled=true", "think.no_think_frac=0.5", "algo.kl_in_reward=true", "algo.kl_coef=0.1"],
            "kl_in_reward",
        ),
        (["think.enabled=true", "rewards=[{name: decaying_exit}]"], "needs think.early_exits"),
        (["think.enabled=true", "rewards=[{name: hbpo_budget, max_tokens: 48}]"], "needs think.budgets"),
        (
            [
                "think.enabled=true",
                "think.budgets=[8, 48]",
                "rewards=[{name: hbpo_budget, max_tokens: 48}]",
                "algo.advantage={name: hbpo, budgets: [8, 48], max_tokens: 48}",
            ],
            "below max_tokens",
        ),
        (
            [
                "think.enabled=true",
                "think.budgets=[8, 16]",
                "rewards=[{name: hbpo_budget, max_tokens: 40}]",
                "algo.advantage={name: hbpo, budgets: [8, 16], max_tokens: 48}",
            ],
            "the hbpo_budget reward's",
        ),
        (
            [
                "think.enabled=true",
                "think.budgets=[8, 16]",
                "rewards=[{name: hbpo_budget, max_tokens: 48}]",
                "algo.advantage={name: hbpo, budgets: [8, 16], max_tokens: 48}",
                "rollout.dynamic_sampling=true",
            ],
            "dynamic_sampling",
        ),
    ],
)
def test_think_config_refuses_what_cannot_run(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "recipe_overrides",
    [
        ["think.budget=4", "think.train_forced=true"],
        [
            "think.budgets=[4, 8]",
            "rewards=[{name: hbpo_budget, max_tokens: 12}]",
            "algo.advantage={name: hbpo, budgets: [4, 8], max_tokens: 12}",
        ],
        ["think.no_think_frac=0.5", "rewards=[{name: adapt_think}]", "algo.advantage=identity"],
        ["think.early_exits=true", "think.budget=6", "rewards=[{name: decaying_exit}]", "algo.advantage=dr_grpo"],
    ],
    ids=["elastic", "hbpo", "adapt_think", "s_grpo"],
)
def test_each_think_mode_trains_through_the_one_loop(tiny_config, tmp_path, recipe_overrides):
    import json

    from rlvr.trainer import train

    config = tiny_config("think.enabled=true", "rollout.max_new_tokens=8", "think.answer_tokens=2", "train.steps=2",
                         "eval.verifier=math", *recipe_overrides)  # fmt: skip
    run = train(config, tmp_path / "run")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/total" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss/total"]) for r in steps)
    assert all("think/no_think_rate" in r and "think/forced_frac" in r for r in steps)
    if "think.no_think_frac=0.5" in recipe_overrides:
        assert all(r["think/no_think_rate"] == 0.5 for r in steps)  # forced: half of each group, by its first text
    if "think.budget=4" in recipe_overrides:
        assert all(r["think/forced_frac"] > 0 for r in steps)  # tiny-random never closes its thinking
    assert "eval/no_think_rate" in rows[-1] or any("eval/no_think_rate" in r for r in rows)


def test_eval_budgets_cut_the_thinking_and_force_the_answer():
    from rlvr.evaluate import evaluate_budgets

    engine = ScriptedEngine(answering("abcdefghij"))
    results = dict(evaluate_budgets(engine, [example()], "math", SAMPLING, [2, 8], 1, None, think()))
    assert results[2].rows[0]["completion"] == "ab" + FORCED + "7}"
    assert results[8].metrics["eval/response_length"] - results[2].metrics["eval/response_length"] == 6
    assert all(r.metrics["eval/forced_frac"] == 1.0 and r.metrics["eval/accuracy"] == 1.0 for r in results.values())


def no_think_probability(model, tokenizer, think_cfg) -> float:
    """The policy's probability that the first token after the prefilled <think> starts </think>."""
    import torch

    from rlvr.rollout.think import opened_prompt
    from rlvr.tasks import make_task

    example = make_task("arithmetic").split("eval")[0]
    ids = torch.tensor([opened_prompt(tokenizer, example, think_cfg)])
    close_first = tokenizer(think_cfg.close, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        return torch.softmax(model(ids).logits[0, -1].float(), dim=-1)[close_first].item()


def test_adaptthink_learns_to_skip_thinking_when_skipping_pays(tiny_config, tmp_path):
    """A no-think bonus moves the importance-sampled first token toward skipping: after the same
    steps, the probability of closing the thinking at once is far higher with delta = 1 than with
    delta = 0 (where a no-think answer, never right under this reward, only loses). Six steps of
    tiny-random at lr 0.1 are noisy, so the claim is the median over three seeds."""
    from statistics import median

    from transformers import AutoModelForCausalLM

    from rlvr.models import load_model
    from rlvr.trainer import train

    tokenizer = load_model("tiny-random")[1]
    ratios = []
    for seed in (0, 1, 2):
        after = {}
        for delta in (0.0, 1.0):
            reward = f"rewards=[{{name: adapt_think, delta: {delta}}}]"
            config = tiny_config("think.enabled=true", "think.no_think_frac=0.5", reward, "algo.advantage=identity",
                                 "rollout.max_new_tokens=2", "train.steps=6", "eval.size=4",
                                 f"train.seed={seed}")  # fmt: skip
            run = train(config, tmp_path / f"seed-{seed}-delta-{delta}")
            after[delta] = no_think_probability(
                AutoModelForCausalLM.from_pretrained(run / "final"), tokenizer, config.think
            )
        ratios.append(after[1.0] / after[0.0])
    assert median(ratios) > 2, ratios
