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


def test_vote_keys_merge_equal_numbers():
    from rlvr.evaluate import vote_key

    assert vote_key("so \\boxed{8}") == vote_key("#### 8.0") == vote_key("it is 16/2") == "8"
    assert vote_key("\\boxed{1,234}") == "1234"
    assert vote_key("\\boxed{x + 1}") == "x+1"
    assert vote_key("no answer here") is None


def test_majority_vote_hand_computed():
    from rlvr.evaluate import majority_correct

    # answers 3, 5, 5, None: 5 wins (two votes) and its completions were right
    assert majority_correct(["3", "5", "5", None], [False, True, True, False])
    # a tie 3/5 goes to the answer reached first
    assert not majority_correct(["3", "5", "3", "5"], [False, True, False, True])
    assert majority_correct(["5", "3", "3", "5"], [True, False, False, True])
    assert not majority_correct([None, None], [False, False])  # nobody answered


def test_maj_at_k_differs_from_pass_at_k(monkeypatch):
    """Two problems, 4 samples each: problem 1 answers 7,7,7,2 (gold 7), problem 2 answers 1,1,9,1 (gold 9).
    pass@4 = 1 for both; maj@4 = 1/2 (problem 2's majority is wrong); maj@2 over the first two: 1/2."""
    import rlvr.evaluate
    from rlvr.evaluate import evaluate
    from rlvr.types import Completion, Example

    answers = {"p1": ["7", "7", "7", "2"], "p2": ["1", "1", "9", "1"]}
    examples = [Example("p1", [], "7"), Example("p2", [], "9")]

    def fake_generate(engine, examples, n, sampling):
        return [
            [Completion(e, f"\\boxed{{{a}}}", [], [1], [0.0], [1], "stop") for a in answers[e.id]] for e in examples
        ]

    monkeypatch.setattr(rlvr.evaluate, "generate", fake_generate)
    result = evaluate(None, examples, "math", None, samples=4)
    m = result.metrics
    assert m["eval/accuracy"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert m["eval/pass@4"] == 1.0
    assert m["eval/maj@4"] == 0.5 and m["eval/maj@2"] == 0.5
    assert [r["sample"] for r in result.rows] == [0, 1, 2, 3] * 2


def test_a_verifier_votes_its_own_way_or_not_at_all(monkeypatch):
    """multiple_choice votes on letters ("B" and "(B)" are one vote); json_schema reports no maj@k."""
    import rlvr.evaluate
    from rlvr.evaluate import evaluate
    from rlvr.types import Completion, Example

    texts = {"mc": ["Answer: B", "(B)", "Answer: A"], "js": ['{"a": 1}', "{}", "no"]}
    mc = Example("mc", [], "B", {"choices": ["x", "y", "z"]})
    js = Example("js", [], '{"a": 1}', {"schema": {"type": "object", "required": ["a"]}})

    def fake_generate(engine, examples, n, sampling):
        return [[Completion(e, t, [], [1], [0.0], [1], "stop") for t in texts[e.id]] for e in examples]

    monkeypatch.setattr(rlvr.evaluate, "generate", fake_generate)
    chosen = evaluate(None, [mc], "multiple_choice", None, samples=3).metrics
    assert chosen["eval/maj@2"] == 1.0 and chosen["eval/accuracy"] == pytest.approx(2 / 3)
    schema = evaluate(None, [js], "json_schema", None, samples=3).metrics
    assert "eval/maj@2" not in schema and schema["eval/pass@2"] == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2)
