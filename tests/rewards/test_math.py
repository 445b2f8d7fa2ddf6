import threading

import pytest

from rlvr.rewards import REWARDS, answers_match, extract_answer
from rlvr.rewards.math import boxed_contents
from rlvr.types import Example


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{3} then \\boxed{ 4 }", "4"),
        ("\\boxed{\\boxed{7}}", "7"),
        ("first \\boxed{5}, then cut off \\boxed{12", "5"),
        ("\\boxed{9} and an empty \\boxed{}", "9"),
        ("\\boxed {x^{2}}", "x^{2}"),
        ("work\n#### 1,234\nextra 99", "1,234"),
        ("#### 5 then #### 6", "6"),
        ("x = -3", "-3"),
        ("5-3", "3"),
        ("it costs $1,234,567.50 in total", "1,234,567.50"),
        ("pi is about 3.5 here", "3.5"),
        ("half is 1/2", "1/2"),
        ("The answer is 8.", "8"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_boxed_contents_all_complete_boxes():
    assert boxed_contents("\\boxed{a} \\fbox{b} \\boxed{c{d}} \\boxed{e") == ["a", "b", "c{d}"]


@pytest.mark.parametrize(
    "predicted, gold",
    [
        ("8", "8.0"),
        ("8.00", "8"),
        ("8.", "8"),
        ("1,234", "1234"),
        ("$18", "18"),
        ("-3", "-3.0"),
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{3}{4}", "3/4"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_answers_match(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize(
    "predicted, gold",
    [
        ("7", "8"),
        ("garbage", "8"),
        ("", "8"),
        ("0.333", "1/3"),
        ("\\frac{1}{0}", "1"),
        ("1,2", "12"),
        ("{", "}"),
    ],
)
def test_answers_do_not_match(predicted, gold):
    assert not answers_match(predicted, gold)


def test_answers_match_off_the_main_thread():
    """math-verify's signal timeout fails off the main thread; we must turn it off, not return False."""
    results = []
    thread = threading.Thread(target=lambda: results.append(answers_match("\\frac{1}{2}", "0.5")))
    thread.start()
    thread.join()
    assert results == [True]


def test_math_and_format_rewards():
    ex = Example(id="q1", prompt=[], answer="72")
    math, fmt = REWARDS.get("math"), REWARDS.get("boxed_format")
    assert math("48 + 24 = \\boxed{72}", ex) == 1.0
    assert math("#### 72.0", ex) == 1.0
    assert math("so it is 71", ex) == 0.0
    assert math("no idea", ex) == 0.0
    assert fmt("\\boxed{71}", ex) == 1.0
    assert fmt("\\boxed{ }", ex) == 0.0
    assert fmt("72", ex) == 0.0
