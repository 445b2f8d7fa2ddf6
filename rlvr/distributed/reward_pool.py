"""Rewards as Ray tasks (``distributed.reward_workers``): a step's scoring split over processes.

The step's groups are dealt in ``reward_workers`` runs of consecutive whole groups (so group rewards
and the verifier's ``correct`` see whole groups) and each run is scored by
:func:`rlvr.rewards.score` in a Ray task; the results are put back in order, so the totals and
components are those of the one-process call, value for value (tested). A slow or CPU-bound verifier
(code execution, a sandbox, math-verify on long answers) then runs on as many CPUs as the cluster
lends, and a task whose process dies (a reward that crashes its interpreter, an out-of-memory kill, a
lost node) is run again by Ray, up to ``distributed.max_restarts`` times, so the step ends as an
undisturbed one would. A reward that raises is not retried: its one-line ``RewardError`` stops the
run as in one process. Every call waits at most ``distributed.timeout_s``.

Why Ray tasks and not rlvr's own process pool: the same cluster places them (on other nodes too),
Ray retries a task whose worker died, and the reward functions travel by cloudpickle, plugins and
file rewards included (the run's ``plugins`` are imported in each worker; the terms and the verifier are
bound in the driver, so a reward registered only there travels too).

Limits: scoring starts when the step's rollout has ended (the rollout returns the whole batch), so it
runs beside the driver's work, not beside generation; a ``batch`` reward sees one run of groups, not
the whole step, which changes nothing for rewards that score rows independently (an LLM judge
batched for speed) but would for one that compares rows across groups.
"""

from itertools import accumulate

import ray

from rlvr.errors import RlvrError, TrainingError, first_line


def score_part(completions, terms, verifier, group_size, plugins=()):
    from rlvr.rewards import load_reward_plugins, score

    load_reward_plugins(list(plugins))  # the run's reward plugins, registered in this worker too (a no-op when loaded)
    return score(completions, None, terms, verifier=verifier, group_size=group_size)


def deal(sizes: list[int], parts: int) -> list[list[int]]:
    """Group indices in at most ``parts`` consecutive runs of about equal rows (each run non-empty)."""
    total, runs, done = sum(sizes), [[]], 0
    for g, size in enumerate(sizes):
        if runs[-1] and done >= total * len(runs) / parts and len(runs) < parts:
            runs.append([])
        runs[-1].append(g)
        done += size
    return runs


class RewardPool:
    """Driver side: ``score`` with :func:`rlvr.rewards.score`'s signature, run as Ray tasks."""

    def __init__(self, d, plugins=()) -> None:
        from pathlib import Path

        self.parts, self.timeout_s = d.reward_workers, d.timeout_s
        # files by absolute path: a worker's working directory need not be the driver's
        self.plugins = [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins]
        pickle_plugins_by_value()
        self.task = ray.remote(score_part).options(num_cpus=d.reward_cpus, max_retries=d.max_restarts)

    def score(self, completions, examples, terms, *, verifier=None, group_size=None):
        from rlvr.rewards import group_sizes, score

        sizes = group_sizes(len(completions), group_size)
        if examples is not None or not sizes:  # no rows, or not whole groups of their own examples: one process
            return score(completions, examples, terms, verifier=verifier, group_size=group_size)
        terms = bound_here(terms, verifier)
        starts = [0, *accumulate(sizes)]
        futures = []
        for run in deal(sizes, self.parts):
            rows = completions[starts[run[0]] : starts[run[-1] + 1]]
            futures.append(self.task.remote(rows, terms, verifier, [sizes[g] for g in run], self.plugins))
        try:
            results = ray.get(futures, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            cancel(futures)
            raise TrainingError(f"rewards outlasted distributed.timeout_s={self.timeout_s}") from None
        except ray.exceptions.RayTaskError as err:
            cancel(futures)
            cause = err.cause
            if isinstance(cause, RlvrError):  # a reward that raised, a bad plugin: the one-process error, as it is
                raise type(cause)(str(cause)) from None
            raise TrainingError(f"a reward task failed: {first_line(cause or err)}") from None
        except ray.exceptions.RayError as err:  # its process died more than max_restarts times
            cancel(futures)
            raise TrainingError(f"a reward task failed: {first_line(err)}") from None
        totals = [t for part, _ in results for t in part]
        components = {name: [v for _, parts in results for v in parts[name]] for name in results[0][1]}
        return totals, components


def bound_here(specs, verifier: str | None) -> list:
    """The terms bound in the driver, the verifier among them at weight 0 when it is not a term: rewards
    registered only in the driver (a script's own, the tests') then travel as functions, not names."""
    from dataclasses import replace

    from rlvr.rewards import bind_reward, reward_terms

    terms = reward_terms(specs)
    if verifier is not None and verifier not in {t.name for t in terms}:
        terms.append(replace(bind_reward(verifier, key="eval.verifier"), weight=0.0))
    return terms


def cancel(futures) -> None:
    for f in futures:
        ray.cancel(f, force=True)


def pickle_plugins_by_value() -> None:
    """File plugins live in modules made up at import (``rlvr_plugin_*``) that no worker can import by
    name: their functions travel by value."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("rlvr_plugin_"):
            ray.cloudpickle.register_pickle_by_value(module)
