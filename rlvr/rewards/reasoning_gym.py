"""reasoning-gym's own verifiers as a reward (github.com/open-thought/reasoning-gym), for task ``reasoning_gym``.

The answer is the content of the last non-empty ``<answer>...</answer>`` (what reasoning-gym's own
prompts ask for and its ``extract_answer`` reads; stripped, tag case ignored); without one, what
``fallback`` says: ``boxed`` (the default) the last non-empty ``\\boxed{}``; ``none`` nothing;
``last_number`` :func:`rlvr.rewards.math.extract_answer` (the last ``\\boxed{}``, else the text after
``####``, else the last number in the text), for models too small to follow the format on datasets
whose answers are numbers (the ``math`` reward's rule; it also credits ``2 + 5 = 7``). With no answer
the score is 0.0 and the verifier is not called.

The score is the source dataset's ``score_answer(answer, entry)``, the dataset rebuilt with the
example's generator options (``meta["config"]``: some verifiers read them) and the entry given back
exactly as generated (:func:`rlvr.tasks.reasoning_gym.from_json`). It is a float in [0, 1] and the
partial credit is reasoning-gym's choice: many verifiers give 0.01-0.05 for a well-formed wrong
answer, some ``len(gold) / len(answer)`` when the answer contains the gold one. Accuracy counts
only 1.0 (rlvr.evaluate), so partial credit shapes the training reward, not the accuracy.

A verifier that raises: some raise on a malformed answer (``prime_factorization`` calls ``int()`` on
each factor). The raise is the answer's fault, and scores 0.0, when the same verifier scores the
entry's own gold answer without raising; otherwise (the gold raises too, or the dataset has no
single gold answer, as ``boxnet`` or ``rush_hour``) it is a bug or a broken entry and propagates, so
:func:`rlvr.rewards.score` stops with a RewardError naming the sample.

Limits: no timeout around the verifier (a few parse with sympy); the answer is what the tag holds,
so a model that writes ``<answer>x = 5</answer>`` where reasoning-gym wants ``5`` gets that
verifier's verdict, often partial credit.
"""

import json
import re
from functools import lru_cache
from numbers import Real
from typing import Any, Literal

from rlvr.rewards import REWARDS, model_text
from rlvr.rewards.math import boxed_contents, extract_answer
from rlvr.types import Completion, Example

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
Fallback = Literal["boxed", "none", "last_number"]


def extract_tagged_answer(text: str, *, fallback: Fallback = "boxed") -> str | None:
    """The last non-empty ``<answer>`` content, else what ``fallback`` gives (module docstring); None if nothing."""
    tagged = [c.strip() for c in _ANSWER_TAG.findall(text) if c.strip()]
    if tagged:
        return tagged[-1]
    if fallback == "boxed":
        boxed = [c.strip() for c in boxed_contents(text) if c.strip()]
        return boxed[-1] if boxed else None
    if fallback == "last_number":
        return extract_answer(text)
    return None


@lru_cache(maxsize=64)
def _scorer(name: str, options_json: str):
    """The dataset whose ``score_answer`` judges ``name`` under these options (built once per pair)."""
    from rlvr.tasks.reasoning_gym import check_dataset_name, from_json, import_reasoning_gym, make_generator

    import_reasoning_gym()
    check_dataset_name(name, "example.meta['source_dataset']")
    return make_generator(name, from_json(json.loads(options_json)), seed=0, size=1, key="example.meta['config']")


def score_entry(answer: str, meta: dict[str, Any]) -> float:
    """reasoning-gym's score of ``answer`` for the entry in ``meta`` (see the module docstring for raises)."""
    from rlvr.tasks.reasoning_gym import from_json

    name, entry = meta.get("source_dataset"), meta.get("entry")
    if not isinstance(name, str) or not isinstance(entry, dict):
        raise ValueError(
            "the reasoning_gym reward needs example.meta['source_dataset'] and ['entry'] "
            "(examples of task reasoning_gym)"
        )
    dataset = _scorer(name, json.dumps(meta.get("config") or {}, sort_keys=True))
    entry = from_json(entry)
    try:
        value = dataset.score_answer(answer, entry)
    except Exception:
        if not _scores_gold(dataset, entry, answer):
            raise  # the verifier fails on its own answer too (or has none to try): a bug or a broken entry
        return 0.0  # it scores the gold answer: the model's answer made it raise
    if not isinstance(value, Real) or not 0.0 <= value <= 1.0:  # bools and numpy floats are Real
        raise ValueError(f"reasoning-gym dataset {name!r} scored {value!r}, not a number in [0, 1]")
    return float(value)


def _scores_gold(dataset, entry: dict, answer: str) -> bool:
    """True when ``entry`` has a gold answer other than ``answer`` and the verifier scores it without raising."""
    gold = entry.get("answer")
    if not isinstance(gold, str) or not gold or gold == answer:
        return False
    try:
        dataset.score_answer(gold, entry)
    except Exception:
        return False
    return True


@REWARDS.register("reasoning_gym", vote_key=lambda text, example: extract_tagged_answer(text, fallback="last_number"))
def reasoning_gym_reward(completion: Completion | str, example: Example, *, fallback: Fallback = "boxed") -> float:
    """reasoning-gym's ``score_answer`` of the tagged answer for this example's source dataset, in [0, 1]."""
    answer = extract_tagged_answer(model_text(completion), fallback=fallback)
    return 0.0 if answer is None else score_entry(answer, example.meta)
