"""Exact match for short text answers (names, places): SQuAD's EM after normalisation.

The ``math`` reward cannot judge names: math-verify reads ``Tala`` as the product of symbols
T*a*l*a, so anagrams would "match". This reward extracts the final answer from, in order, the
last non-empty ``\\boxed{}``, the last non-empty ``<answer>...</answer>``, the last non-empty
line; then compares it with ``example.answer`` after :func:`normalize_answer` (SQuAD v1.1's:
lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace), extended to
unwrap LaTeX text commands (``\\boxed{\\text{Tala Voskin}}``) and to drop Unicode punctuation.

Limits: no aliases or partial credit (``Voskin`` is not ``Tala Voskin``, SQuAD's F1 is not
computed); the last-line fallback reads a whole sentence ("The answer is Velmora.") which then
does not match, so prompts should ask for a box; articles are English only.
"""

import re
import string
import unicodedata

from rlvr.rewards import REWARDS, model_text
from rlvr.rewards.math import boxed_contents
from rlvr.types import Completion, Example

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|emph|mbox)\s*\{([^{}]*)\}")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def extract_text_answer(completion: str) -> str | None:
    """The last non-empty ``\\boxed{}``, else ``<answer>`` tag, else non-empty line; None if none."""
    for candidates in (boxed_contents(completion), _ANSWER_TAG.findall(completion), completion.splitlines()):
        stripped = [c.strip() for c in candidates if c.strip()]
        if stripped:
            return stripped[-1]
    return None


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: unwrap ``\\text{}``, lowercase, drop punctuation and articles, one space."""
    previous = None
    while previous != text:  # nested \textbf{\text{...}}
        previous, text = text, _LATEX_TEXT.sub(r"\1", text)
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@REWARDS.register("exact_match")
def exact_match(completion: Completion | str, example: Example) -> float:
    """1.0 if the extracted answer equals ``example.answer`` after normalisation (never on empty)."""
    predicted = extract_text_answer(model_text(completion))
    if predicted is None:
        return 0.0
    norm = normalize_answer(predicted)
    return 1.0 if norm and norm == normalize_answer(example.answer) else 0.0
