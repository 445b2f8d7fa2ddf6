"""Format rewards: did the completion follow the answer format, whatever the answer?

Useful as a small shaping term next to a correctness reward (DeepSeek-R1's format reward),
e.g. ``[("math", 1.0), ("boxed_format", 0.1)]``. Limit: it checks the form only, so on its
own it rewards a boxed wrong answer as much as a boxed right one.
"""

from rlvr.rewards import REWARDS, model_text
from rlvr.rewards.math import boxed_contents
from rlvr.types import Completion, Example


@REWARDS.register("boxed_format")
def boxed_format(completion: Completion | str, example: Example) -> float:
    """1.0 if the completion contains a complete ``\\boxed{...}`` with something in it, else 0.0."""
    return 1.0 if any(c.strip() for c in boxed_contents(model_text(completion))) else 0.0
