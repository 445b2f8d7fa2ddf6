"""Scaf-GRPO's scaffolding: tiered in-prompt hints for the groups the policy cannot solve.

Zhang et al. 2025, "Scaf-GRPO: Scaffolded Group Relative Policy Optimization for Enhancing LLM
Reasoning", arXiv 2510.19807. A group whose rollouts are all wrong has zero advantage (the "learning
cliff"). After a guidance-exemption period (``hints.start`` steps) and once a prompt's groups have
been all wrong ``hints.after`` times in a row, its hints are tried tier by tier, abstract to concrete
(knowledge, planning, solution): ``hints.samples`` rollouts of the prompt with the tier's hint
appended; the first tier under which one of them is right stops the search, and that right rollout
replaces one of the group's failed ones (the minimal intervention). The group now holds a right
answer, so its advantages are no longer zero, and training stays on-policy: the hinted rollout is
trained as a response to the hinted prompt it was sampled from (the hint sits in the prompt, so its
tokens are never trained). The replaced rollout still counts in the step's metrics and in what the
sampler learns about the bare prompt (:mod:`rlvr.collect`).

Tasks supply the tiers as ``example.meta["hints"]`` (a list, abstract first): the arithmetic and
countdown tasks do; a dataset file can carry a ``hints`` column. Prompts without hints are left alone.
Limits: the hint is plain text after the last user message; hinted rollouts that are not used
(wrong ones, and right ones beyond the first) are counted (``hints/rollouts``) but not trained on;
a group needs two rollouts of its own prompt to be hinted (one stays unhinted).
"""

from dataclasses import replace

from rlvr.types import Completion, Example


def hinted(example: Example, level: int, prefix: str) -> Example | None:
    """``example`` with its ``level``-th hint (1-based) after the last message; None when it has none."""
    tiers = example.meta.get("hints") or []
    if not 1 <= level <= len(tiers):
        return None
    prompt = [dict(m) for m in example.prompt]
    prompt[-1]["content"] = f"{prompt[-1]['content']}{prefix}{tiers[level - 1]}"
    return replace(example, prompt=prompt)


class HintScaffold:
    """Counts each prompt's consecutive all-wrong groups and hints the groups that qualify (checkpointed)."""

    def __init__(self, after: int, start: int, samples: int, prefix: str) -> None:
        self.after, self.start, self.samples, self.prefix = after, start, samples, prefix
        self.failures: dict[str, int] = {}  # example id -> consecutive all-wrong groups

    def stuck(self, groups: list[list[Completion]], correct: list[list[bool]], step: int) -> list[int]:
        """Record this round's outcomes; the groups to hint now."""
        chosen = []
        for b, (group, right) in enumerate(zip(groups, correct, strict=True)):
            key = group[0].example.id
            self.failures[key] = 0 if any(right) else self.failures.get(key, 0) + 1
            own = sum(c.origin == "policy" for c in group)  # one of them must stay unhinted
            ready = step > self.start and self.failures[key] >= self.after
            if ready and own > 1 and group[0].example.meta.get("hints"):
                chosen.append(b)
        return chosen

    def scaffold(self, groups, correct, step: int, sample, judge) -> tuple[list[list[Completion]], dict[str, float]]:
        """Hint the stuck groups: ``sample(examples, n)`` rolls out, ``judge(completions)`` says which are right."""
        todo = self.stuck(groups, correct, step)
        metrics = {"hints/groups": float(len(todo)), "hints/solved": 0.0, "hints/rollouts": 0.0}
        levels: list[int] = []
        level = 1
        while todo:
            examples = {b: hinted(groups[b][0].example, level, self.prefix) for b in todo}
            todo = [b for b in todo if examples[b] is not None]
            if not todo:
                break
            tries = sample([examples[b] for b in todo], self.samples)
            metrics["hints/rollouts"] += float(len(todo) * self.samples)
            unsolved = []
            for b, rollouts in zip(todo, tries, strict=True):
                right = [c for c, ok in zip(rollouts, judge(rollouts), strict=True) if ok]
                if right:  # the first right one takes the place of the group's first (failed) rollout
                    groups[b] = [replace(right[0], hint_level=level), *groups[b][1:]]
                    levels.append(level)
                else:
                    unsolved.append(b)
            todo, level = unsolved, level + 1
        metrics["hints/solved"] = float(len(levels))
        if levels:
            metrics["hints/level_mean"] = sum(levels) / len(levels)
        return groups, metrics

    def state_dict(self) -> dict:
        return {"failures": dict(self.failures)}

    def load_state_dict(self, state: dict) -> None:
        self.failures = dict(state["failures"])
