"""Multiple choice: which option did the model pick? (MMLU/ARC/GPQA-style questions.)

The options are in ``example.meta["choices"]``: a list of option texts (lettered A, B, ... in
order) or a dict letter -> text. The gold ``example.answer`` is a letter (``"B"``, ``"(b)"``), a
0-based index (``"1"`` is B: MMLU's convention, a Python list index) or one option's text.
The reading widens OpenAI simple-evals' ``Answer: X`` regex and lm-evaluation-harness's
multiple-choice answer filters: more forms, the option's text, and ambiguity scored 0.

:func:`extract_choice` reads the model's choice from the first of these steps that yields one:

1. the last non-empty ``\\boxed{...}``;
2. the last non-empty ``<answer>...</answer>``;
3. answer phrases, from the last one back: "the answer is (B)", "Answer: B", "the correct
   option is b)", "I choose B", "the answer is probably B", or the reverse "(B) is the correct
   answer"; a phrase's candidate runs to the end of its line;
4. the last non-empty line, read alone (leading "So,", "Therefore," dropped): "B", "(B)",
   "**B.**", "B) Paris";

each step reading its candidate the same way: a letter in answer position, i.e. at the start of
the candidate, in any of the forms ``B``, ``b``, ``(B)``, ``[B]``, ``B)``, ``B.``, ``B:``; else
(with ``text_match``) the option TEXT: the candidate, normalised like ``exact_match`` (lowercase,
no punctuation, no articles), equals one option's text, or, in steps 1-3 only, its first
sentence mentions exactly one option's text ("the answer is Paris" with choices [Berlin, Paris]);
an option contained in a longer mentioned one ("Paris" in "Paris, Texas") is not counted twice.

Ambiguity is a 0.0, never a guess: two different letters at the answer position ("B or C",
``\\boxed{A, B}``), a letter followed by another option's text ("A) Paris" when Paris is B),
several options mentioned, or letters in the span but none in answer position ("the answer is
not A, it's B"). Such a candidate ends the search; a candidate with nothing readable in it ("the
answer is not obvious") passes to the next step (in step 3: to the phrase before it).

False positives guarded against: a bare letter only counts at the start of a candidate, so the
article in "A good answer is B" is never option A (the phrase reads "B"); a bare letter followed
by an ordinary lowercase word ("the answer is a bit subtle", "Answer: A detailed proof follows")
is not a letter, unless the word is a connective ("B because ...", "B since ...", "B is ...");
followed by a capitalised word it counts only if the rest is that very option's text ("A Tale of
Two Cities" is read as option text); letters past the number of options never count ("I think"
with four options); "A.M." and "e.g." are not letters; the last line's fallback does not read an
echo of the option list ("C. Rome" under "B. Paris").

Limits: English phrases only; the reverse form and connectives are short fixed lists; a list of
letters written with other separators than ``, / & and or vs`` is not seen as ambiguous; a
phrase's candidate runs to the end of its line, so "the answer is B, A is wrong" reads as a list
(0.0); option texts that normalise to nothing ("?", "a") are never matched by text, and ones that
differ only in punctuation ("3.5" and "35") normalise alike; the sentence cut for text matches is
the first ``.!?;`` followed by a space.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator

from rlvr.errors import RewardError
from rlvr.rewards import REWARDS, model_text
from rlvr.rewards.exact_match import normalize_answer
from rlvr.rewards.math import boxed_contents
from rlvr.types import Completion, Example

LETTERS = "ABCDEFGHIJ"
_AMBIGUOUS = "?"  # internal: the candidate names several options (extract_choice returns None)

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|emph|mbox|fbox)\s*\{([^{}]*)\}")
_MARKUP = re.compile(r"[*`$]|\\[()\[\]]")  # markdown emphasis, code ticks, LaTeX math delimiters
_QUOTED_LETTER = re.compile(r"[\"'“‘]([A-Za-z])[\"'”’]")
# a letter in answer position: (B) [B] B) B. B: (the dot/colon/bracket not inside a word: "A.M.", "e.g.")
_DELIMITED = re.compile(r"\s*(?:\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])[).:\]](?![A-Za-z0-9]))")
_BARE = re.compile(r"\s*([A-Za-z])(?![\w'’-]|\.\w)")
_LIST_SEPARATOR = re.compile(r"\s*(?:,|/|&|\+|\bor\b|\band\b|\bvs\b\.?)\s*", re.IGNORECASE)
_CONNECTIVES = frozenset("because since as or and is was which would seems appears must should being".split())
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s")
_LEADING_JUNK = re.compile(r"^[\s\"'“”‘’,;:\-–—>]+")
_LEADING_CONNECTIVE = re.compile(r"^\s*(?:so|therefore|thus|hence|finally|overall|in\s+conclusion)\b[\s,:]*", re.I)
_HEDGES = r"probably|likely|clearly|definitely|certainly|indeed|therefore|thus|actually|most\s+likely|either"
_FORWARD = re.compile(
    r"(?:\b(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)s?\b"
    r"(?:\s+(?:to|for|of)\s+(?:this|the)\s+(?:question|problem))?(?:\s+(?:here|then|therefore|thus))?"
    r"(?:\s*[:=]|\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be|has\s+to\s+be|seems\s+to\s+be)\b\s*:?)"
    r"|\bI\s*(?:would\s+|will\s+|'d\s+|'ll\s+)?(?:choose|pick|select|go\s+with)\b)"
    rf"(?:[\s,]*(?:{_HEDGES})\b)*[\s,:]*(?:(?:option|choice|letter|answer)\b)?",
    re.IGNORECASE,
)
_REVERSE = re.compile(
    r"(?:(?i:\b(?:option|choice|answer))\s+)?(?:\(([A-Za-z])\)|\[([A-Za-z])\]|(?<![\w'’])([A-Z])(?![\w'’]))"
    r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best)\b)"
)


def _check_letters(letters: str) -> str:
    upper = letters.upper()
    if not upper or not (upper.isascii() and upper.isalpha()) or len(set(upper)) != len(upper):
        raise ValueError(f"letters must be distinct ASCII letters such as 'ABCD', got {letters!r}")
    return upper


def option_map(choices: Sequence[Any] | Mapping[str, Any], letters: str = LETTERS) -> dict[str, str]:
    """``{letter: option text}`` from a list of texts (lettered in order) or a dict letter -> text.

    A ValueError (the caller names the example) for an empty or non-list/dict ``choices``, more
    options than ``letters``, or a dict key that is not one of ``letters`` (case-insensitive)."""
    letters = letters.upper()
    if isinstance(choices, Mapping):
        options: dict[str, str] = {}
        for key, text in choices.items():
            letter = str(key).strip().upper()
            if len(letter) != 1 or letter not in letters:
                raise ValueError(f"choice label {key!r} is not one of the letters {letters!r}")
            if letter in options:
                raise ValueError(f"choice label {key!r} is given twice")
            options[letter] = str(text)
    elif isinstance(choices, Sequence) and not isinstance(choices, str | bytes):
        if len(choices) > len(letters):
            raise ValueError(f"{len(choices)} choices but only {len(letters)} letters ({letters!r})")
        options = {letters[i]: str(text) for i, text in enumerate(choices)}
    else:
        kind = type(choices).__name__
        raise ValueError(f"choices must be a list of option texts or a dict letter -> text, got {kind}")
    if not options:
        raise ValueError("choices is empty")
    return options


def format_choices(question: str, choices: Sequence[Any] | Mapping[str, Any], *, letters: str = LETTERS) -> str:
    """A multiple-choice prompt body: the question, a blank line, one ``B. text`` line per option.

    ``format_choices("Capital of France?", ["Berlin", "Paris"])`` is
    ``"Capital of France?\\n\\nA. Berlin\\nB. Paris"``. The task adds its own instruction (e.g.
    "Put the letter of your answer in \\\\boxed{}.")."""
    lines = [f"{letter}. {text}" for letter, text in option_map(choices, letters).items()]
    return f"{question.rstrip()}\n\n" + "\n".join(lines)


def gold_letter(answer: str, options: Mapping[str, str]) -> str:
    """The gold option's letter: ``answer`` as a letter (``B``, ``(b)``, ``B.``), else a 0-based
    index, else one option's text (normalised); a ValueError if it is none of these."""
    text = str(answer).strip()
    letter = re.fullmatch(r"[(\[]?\s*([A-Za-z])\s*[)\].:]?", text)
    if letter and letter.group(1).upper() in options:
        return letter.group(1).upper()
    if text.isdigit():
        index, keys = int(text), list(options)
        if index < len(keys):
            return keys[index]
        raise ValueError(f"answer index {index} is out of range for {len(keys)} choices (indices are 0-based)")
    norm = normalize_answer(text)
    same = [key for key, option in options.items() if norm and normalize_answer(option) == norm]
    if len(same) == 1:
        return same[0]
    raise ValueError(
        f"answer {answer!r} is not a letter of the choices ({''.join(options)}), a 0-based index or one option's text"
    )


def extract_choice(
    text: str, choices: Sequence[Any] | Mapping[str, Any], *, letters: str = LETTERS, text_match: bool = True
) -> str | None:
    """The letter of the option ``text`` answers (upper case), or None if none or ambiguous.

    The steps and the rules of reading are in the module docstring."""
    options = option_map(choices, letters)
    cleaned = _clean(text)
    candidates = (
        [c for c in boxed_contents(text) if c.strip()][-1:],
        [c for c in _ANSWER_TAG.findall(text) if c.strip()][-1:],
    )
    for found in candidates:
        if found:
            picked = _read(found[0], options, text_match=text_match, contains=True)
            if picked is not None:
                return None if picked == _AMBIGUOUS else picked
    for reader in (_from_phrase, _from_last_line):
        picked = reader(cleaned, options, text_match)
        if picked is not None:
            return None if picked == _AMBIGUOUS else picked
    return None


def _clean(text: str) -> str:
    previous = None
    while previous != text:  # nested \textbf{\text{...}}
        previous, text = text, _LATEX_TEXT.sub(r"\1", text)
    return _QUOTED_LETTER.sub(r"\1", _MARKUP.sub("", text))


def _lead(span: str) -> tuple[str | None, str, bool]:
    """The letter at the start of ``span`` (any case), the rest, and whether it was delimited."""
    m = _DELIMITED.match(span)
    if m:
        return next(g for g in m.groups() if g), span[m.end() :], True
    m = _BARE.match(span)
    if m:
        return m.group(1), span[m.end() :], False
    return None, span, False


def _bare_letter_counts(letter: str, rest: str, options: Mapping[str, str]) -> bool:
    """A bare letter is an answer unless an ordinary word follows it (the article in "A bit ...")."""
    word = re.match(r"\s+([A-Za-z0-9]+)", rest)
    if word is None or word.group(1).lower() in _CONNECTIVES:  # end, punctuation ("B,", "B (Paris)"), "B because"
        return True
    if word.group(1)[0].islower():
        return False
    return _norm_tokens(rest) == _norm_tokens(options[letter])  # "B Paris" only if B is Paris


def _article_like(rest: str) -> bool:
    """A lowercase ordinary word follows: the letter before it is a word ("A good"), not an option."""
    word = re.match(r"\s+([a-z]+)", rest)
    return word is not None and word.group(1) not in _CONNECTIVES


def _read(span: str, options: Mapping[str, str], *, text_match: bool, contains: bool) -> str | None:
    """One candidate read as a letter, :data:`_AMBIGUOUS`, or None (nothing readable in it)."""
    span = _LEADING_JUNK.sub("", _clean(span))
    letter, rest, delimited = _lead(span)
    if letter is not None:
        upper = letter.upper()
        if upper in options and (delimited or _bare_letter_counts(upper, rest, options)):
            if _another_letter(rest, options, upper):
                return _AMBIGUOUS
            said = _text_equal(_LEADING_JUNK.sub("", rest), options) if text_match else None
            return _AMBIGUOUS if said is not None and said != upper else upper
    if text_match:
        by_text = _text_choice(span, options, contains)
        if by_text is not None:
            return by_text
    return _AMBIGUOUS if _letter_tokens(span, options) else None


def _another_letter(rest: str, options: Mapping[str, str], letter: str) -> bool:
    """``rest`` goes on with a list of letters ("B or C", "B, C"): several answers at once."""
    while True:
        sep = _LIST_SEPARATOR.match(rest)
        if sep is None:
            return False
        other, rest, delimited = _lead(rest[sep.end() :])
        if other is None or other.upper() not in options or not (delimited or re.match(r"\W|$", rest)):
            return False
        if other.upper() != letter:
            return True


def _letter_tokens(span: str, options: Mapping[str, str]) -> set[str]:
    """Option letters standing anywhere in ``span`` (delimited, or bare capitals not followed by a word)."""
    found = set()
    for m in re.finditer(
        r"\(([A-Za-z])\)|\[([A-Za-z])\]|(?<![\w'’])([A-Za-z])\)|(?<![\w'’])([A-Z])(?![\w'’-]|\.\w)", span
    ):
        letter = next(g for g in m.groups() if g)
        if m.group(4) and _article_like(span[m.end() :]):
            continue
        if letter.upper() in options:
            found.add(letter.upper())
    return found


def _norm_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _text_equal(span: str, options: Mapping[str, str]) -> str | None:
    """The option whose text is ``span`` (or its first sentence), normalised; :data:`_AMBIGUOUS` if several."""
    head = _SENTENCE_END.split(span, maxsplit=1)[0]
    forms = [f for f in (_norm_tokens(head), _norm_tokens(span)) if f]
    same = {key for key, text in options.items() if _norm_tokens(text) and _norm_tokens(text) in forms}
    if not same:
        return None
    return same.pop() if len(same) == 1 else _AMBIGUOUS


def _text_choice(span: str, options: Mapping[str, str], contains: bool) -> str | None:
    """The option ``span`` names by its text: equal, or (``contains``) the only one its first
    sentence mentions (an option inside a longer mentioned one does not count)."""
    equal = _text_equal(span, options)
    if equal is not None or not contains:
        return equal
    tokens = _norm_tokens(span)
    head = len(_norm_tokens(_SENTENCE_END.split(span, maxsplit=1)[0])) or len(tokens)
    mentioned = {}
    for key, text in options.items():
        option = _norm_tokens(text)
        if option and any(tokens[i : i + len(option)] == option for i in range(min(head, len(tokens)))):
            mentioned[key] = option
    longest = [k for k, o in mentioned.items() if not any(k2 != k and _inside(o, o2) for k2, o2 in mentioned.items())]
    if not longest:
        return None
    return longest[0] if len(longest) == 1 else _AMBIGUOUS


def _inside(short: list[str], long: list[str]) -> bool:
    return len(short) < len(long) and any(long[i : i + len(short)] == short for i in range(len(long)))


def _from_phrase(cleaned: str, options: Mapping[str, str], text_match: bool) -> str | None:
    """Step 3: answer phrases from the last one back; the first that reads as a choice (or is ambiguous)."""
    found: list[tuple[int, str | None, str]] = []  # (position, letter of a reverse phrase, span of a forward one)
    for m in _FORWARD.finditer(cleaned):
        span = cleaned[m.end() :].split("\n", 1)[0]
        if re.search(r"\w", span):
            found.append((m.start(), None, span))
    for m in _REVERSE.finditer(cleaned):
        letter = next(g for g in m.groups() if g).upper()
        if letter in options:
            found.append((m.start(), letter, ""))
    for _, letter, span in sorted(found, key=lambda f: f[0], reverse=True):
        picked = letter or _read(span, options, text_match=text_match, contains=True)
        if picked is not None:
            return picked
    return None


def _from_last_line(cleaned: str, options: Mapping[str, str], text_match: bool) -> str | None:
    """Step 4: the last non-empty line alone, unless it ends an echo of the option list."""
    lines = [line for line in cleaned.splitlines() if re.search(r"\w", line)]
    if not lines:
        return None
    last = _LEADING_CONNECTIVE.sub("", _LEADING_JUNK.sub("", lines[-1]))
    if len(lines) > 1:
        above, _, above_delimited = _lead(_LEADING_JUNK.sub("", lines[-2]))
        here, _, here_delimited = _lead(last)
        if above_delimited and here_delimited and above and here and above.upper() != here.upper():
            return None  # "B. Paris" then "C. Rome": the options restated, no answer
    return _read(last, options, text_match=text_match, contains=False)


def _vote(text: str, example: Example) -> str | None:
    """maj@k votes on the letter (no options on the example: no vote)."""
    choices = example.meta.get("choices") if example is not None else None
    try:
        return extract_choice(text, choices) if choices else None
    except (TypeError, ValueError):
        return None


@REWARDS.register("multiple_choice", vote_key=_vote)
def multiple_choice(
    completion: Completion | str,
    example: Example,
    *,
    letters: Annotated[str, AfterValidator(_check_letters)] = LETTERS,
    text_match: bool = True,
) -> float:
    """1.0 if the option the completion picks (:func:`extract_choice`) is the gold one, else 0.0.

    ``letters`` labels list-given options in order (and bounds dict labels); ``text_match: false``
    reads letters only, for options whose texts the reasoning is likely to mention (numbers).
    An example without ``meta["choices"]``, or whose gold is none of its options, is a RewardError
    naming it (a data bug, not a wrong answer)."""
    if "choices" not in example.meta:
        raise RewardError(
            f"example {example.id!r} has no meta['choices'] (a list of option texts or a dict letter -> text)"
        )
    try:
        options = option_map(example.meta["choices"], letters)
        gold = gold_letter(example.answer, options)
    except ValueError as err:
        raise RewardError(f"example {example.id!r}: {err}") from None
    picked = extract_choice(model_text(completion), options, letters=letters, text_match=text_match)
    return 1.0 if picked == gold else 0.0
