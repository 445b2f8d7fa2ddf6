from math import comb

import pytest

from rlvr.evaluate import ks_for, pass_at_k


def test_pass_at_k_hand_computed():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))  # 1 - 3/6 = 0.5
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)/C(5,3)
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong: always a correct one


def test_pass_at_1_is_the_fraction_correct():
    for n in range(1, 9):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError, match="pass@3 needs at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_reported_ks():
    assert ks_for(1) == [1]
    assert ks_for(8) == [1, 2, 4, 8]
    assert ks_for(6) == [1, 2, 4]


def test_tokens_per_correct_and_budgets():
    from rlvr.evaluate import evaluate, evaluate_budgets
    from rlvr.models import load_model
    from rlvr.rollout import SamplingParams, make_engine
    from rlvr.tasks import make_task

    model, tokenizer = load_model("tiny-random")
    engine = make_engine("fast", model, tokenizer, 8)
    examples = make_task("arithmetic", digits=1).split("eval")[:4]
    sampling = SamplingParams(max_new_tokens=6, temperature=0.0, return_logprobs=False)
    calls = []

    def every_other(completion, example):  # half the answers count as correct
        calls.append(1)
        return float(len(calls) % 2)

    result = evaluate(engine, examples, every_other, sampling)
    total = result.metrics["eval/response_length"] * 4
    assert result.metrics["eval/tokens_per_correct"] == pytest.approx(total / 2)
    assert "eval/tokens_per_correct" not in evaluate(engine, examples, lambda c, e: 0.0, sampling).metrics
    curve = evaluate_budgets(engine, examples, lambda c, e: 1.0, sampling, [2, 5])
    assert [b for b, _ in curve] == [2, 5]
    assert all(r.metrics["eval/response_length"] <= b for b, r in curve)
