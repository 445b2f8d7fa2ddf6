import pytest

from rlvr.config import load_config
from rlvr.errors import ConfigError, RewardError
from rlvr.rewards import REWARDS, reward_terms, score
from rlvr.rewards.choice import extract_choice, format_choices, gold_letter, option_map
from rlvr.types import Example

CITIES = ["Berlin", "Paris", "Rome", "Madrid", "St. Louis"]  # A B C D E


def city(answer: str = "B", **meta) -> Example:
    return Example(id="q-7", prompt=[], answer=answer, meta={"choices": CITIES, **meta})


@pytest.mark.parametrize(
    "response, expected",
    [
        # the marked forms, in the order they are tried
        ("Paris is the capital. \\boxed{B}", "B"),
        ("\\boxed{\\text{(b)}}", "B"),
        ("$\\boxed{\\textbf{D}}$", "D"),
        ("\\boxed{C) Rome}", "C"),
        ("The answer is (A).\n\\boxed{B}", "B"),  # the box comes first, wherever it is
        ("<answer>C</answer>", "C"),
        ("<answer> [d] </answer>", "D"),
        ("The answer is (B).", "B"),
        ("Answer: B", "B"),
        ("**Answer:** b", "B"),
        ("Final answer: [C]", "C"),
        ("ANSWER: d.", "D"),
        ("The correct option is b) Paris", "B"),
        ("The answer to this question is C.", "C"),
        ("The answer is probably D", "D"),
        ("I choose C.", "C"),
        ("I'd go with A, since Berlin is the capital of Germany.", "A"),
        ("The answer is 'C'.", "C"),
        ("(B) is the correct answer.", "B"),
        ("Option A is correct.", "A"),
        ("The answer is B because A is wrong.", "B"),
        ("The answer is B, since Paris is the capital.", "B"),
        ("The answer is A. Wait, no: the answer is C.", "C"),  # the last phrase wins
        ("Answer: B\nWhy: the answer is clear from the map.", "B"),  # an unreadable phrase passes
        # the last line alone
        ("Thinking about capitals...\nB", "B"),
        ("Thinking...\n(D)", "D"),
        ("Thinking...\nTherefore, (B).", "B"),
        ("Thinking...\n**C.**", "C"),
        ("Thinking...\nB) Paris", "B"),
        # the option's text
        ("the answer is Paris", "B"),
        ("So the answer is Paris. Berlin is in Germany.", "B"),  # only the first sentence counts
        ("So the answer is the city of Paris. Berlin is in Germany.", "B"),
        ("The answer is the city of St. Louis.", "E"),  # an option may run past a period
        ("\\boxed{Madrid}", "D"),
        ("<answer>The capital is Rome</answer>", "C"),
        ("I reasoned a lot.\nParis.", "B"),
        # false positives that must not read as a letter
        ("A good answer is B", "B"),  # the article is not option A
        ("A good answer requires thought.", None),
        ("The answer is a bit subtle.\nB", "B"),
        ("Answer: A detailed proof follows.", None),
        ("Berlin is wrong.", None),  # the last line mentions an option but is not the answer
        ("e.g. this one", None),
        ("The answer is F", None),  # only five options
        ("The answer is I think B", None),  # "I" is no option of five; B is not at the answer position
        ("ABCD", None),
        ("", None),
        # ambiguity is 0, never a guess
        ("The answer is B or C", None),
        ("The answer is either B or C.", None),
        ("The answer is A, B, or C", None),
        ("\\boxed{A, B}", None),
        ("\\boxed{B/C}", None),
        ("B and C are both right", None),
        ("The answer is not A, it's B.", None),
        ("Answer: (C)\nThe answer is not A, it's B.", None),  # ends the search: C is not read
        ("The answer is A) Paris", None),  # the letter and the text disagree
        ("The answer is Paris, not Berlin.", None),  # two options mentioned
        ("A. Berlin\nB. Paris\nC. Rome\nD. Madrid", None),  # the options echoed, no answer
        ("\\boxed{A}\nThe answer is B or C.", "A"),  # the box is read first and is clear
    ],
)
def test_extract_choice(response, expected):
    assert extract_choice(response, CITIES) == expected


def test_text_match_off_reads_letters_only():
    assert extract_choice("the answer is Paris", CITIES, text_match=False) is None
    assert extract_choice("the answer is (b)", CITIES, text_match=False) == "B"
    numbers = ["1", "2", "3", "4"]
    assert extract_choice("2 + 1 = 3, so the answer is 3", numbers) == "C"
    assert extract_choice("2 + 1 = 3, so the answer is 3", numbers, text_match=False) is None


def test_longer_option_text_wins_over_the_one_inside_it():
    choices = ["Paris", "Paris, Texas", "Rome"]
    assert extract_choice("The answer is Paris, Texas.", choices) == "B"
    assert extract_choice("The answer is Paris.", choices) == "A"


def test_ten_letters_and_custom_letters():
    ten = [f"option {i}" for i in range(10)]
    assert extract_choice("The answer is I.", ten) == "I"
    assert extract_choice("The answer is (J)", ten) == "J"
    assert extract_choice("Answer: K", ten) is None
    assert extract_choice("Answer: Y", ["yes", "no"], letters="YN") == "Y"
    assert extract_choice("Answer: A", ["yes", "no"], letters="YN") is None


@pytest.mark.parametrize("answer, expected", [("B", "B"), ("b", "B"), ("(C)", "C"), ("D.", "D"), ("0", "A"),
                                              ("3", "D"), ("Paris", "B"), (" the Rome ", "C")])  # fmt: skip
def test_gold_letter(answer, expected):
    assert gold_letter(answer, option_map(CITIES)) == expected


@pytest.mark.parametrize("answer", ["F", "5", "London", ""])
def test_bad_gold_is_a_reward_error_naming_the_example(answer):
    with pytest.raises(RewardError, match="example 'q-7'"):
        REWARDS.get("multiple_choice")("\\boxed{B}", city(answer))


def test_dict_choices_use_their_own_letters():
    example = Example(id="d", prompt=[], answer="c", meta={"choices": {"a": "red", "c": "blue"}})
    reward = REWARDS.get("multiple_choice")
    assert reward("The answer is (C).", example) == 1.0
    assert reward("The answer is blue", example) == 1.0
    assert reward("The answer is (B).", example) == 0.0  # no option B
    with pytest.raises(RewardError, match="choice label 'z'"):
        reward("B", Example(id="d", prompt=[], answer="a", meta={"choices": {"a": "x", "z": "y"}}))


@pytest.mark.parametrize("meta", [{}, {"choices": []}, {"choices": "ABCD"}, {"choices": list("abcdefghijk")}])
def test_missing_or_bad_choices_are_reward_errors(meta):
    with pytest.raises(RewardError, match="example 'q-7'"):
        REWARDS.get("multiple_choice")("B", Example(id="q-7", prompt=[], answer="B", meta=meta))


def test_reward_values_through_score():
    examples = [city("B"), city("1"), city("Paris"), city("C")]
    _, parts = score(
        ["\\boxed{B}", "Answer: (b)", "the answer is Paris", "B or C"], examples, [("multiple_choice", 1.0)]
    )
    assert parts["multiple_choice"] == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(RewardError, match="reward 'multiple_choice' raised RewardError.*'q-7'"):
        score(["B"], [Example(id="q-7", prompt=[], answer="B")], [("multiple_choice", 1.0)])


def test_recipe_keys_are_checked():
    config = load_config(None, ["rewards=[{name: multiple_choice, letters: abcd, text_match: false}]"])
    assert config.rewards[0].params() == {"letters": "ABCD", "text_match": False}
    (term,) = reward_terms(config.rewards)
    four = Example(id="q-8", prompt=[], answer="B", meta={"choices": CITIES[:4]})
    assert term.fn("Answer: Paris", four) == 0.0 and term.fn("Answer: B", four) == 1.0
    for bad in ["letters: AAB", "letters: 'A1'", "letter: AB"]:
        with pytest.raises(ConfigError, match="rewards\\[0\\]"):
            load_config(None, [f"rewards=[{{name: multiple_choice, {bad}}}]"])


def test_format_choices():
    assert format_choices("Capital of France? ", ["Berlin", "Paris"]) == "Capital of France?\n\nA. Berlin\nB. Paris"
    assert format_choices("Q", {"b": "x", "a": "y"}) == "Q\n\nB. x\nA. y"
    prompt = format_choices("Capital of France?", CITIES)
    assert extract_choice(prompt, CITIES) is None  # the prompt itself (options echoed) is no answer
    with pytest.raises(ValueError, match="11 choices"):
        format_choices("Q", list("abcdefghijk"))
