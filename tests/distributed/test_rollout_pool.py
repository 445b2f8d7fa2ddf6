"""The rollout pool: workers hold the learner's exact weights after a sync (both transports), 1 and 2
workers sample the same tokens, and a worker that dies mid-call is replaced without changing the result."""

from contextlib import contextmanager

import pytest
import torch

from rlvr.config import load_config
from rlvr.distributed.rollout_pool import RolloutPool
from rlvr.models import tiny_random
from rlvr.rollout import SamplingParams, generate
from rlvr.tasks import make_task

SAMPLING = SamplingParams(max_new_tokens=6, temperature=1.0, seed=11)


@contextmanager
def pool(workers: int, transport: str = "object_store"):
    """A RolloutPool of ``workers`` tiny-random workers, closed on the way out."""
    config = load_config(None, ["model.name=tiny-random", "train.precision=fp32", "distributed.backend=ray",
                                f"distributed.rollout_workers={workers}", "distributed.worker_cpus=0.5",
                                f"distributed.transport={transport}", "distributed.timeout_s=60"])  # fmt: skip
    engines = RolloutPool(config, tiny_random()[1], "fp32")
    try:
        yield engines
    finally:
        engines.close()


def tokens(groups):
    return [[(c.token_ids, c.finish_reason) for c in g] for g in groups]


@pytest.fixture(scope="module")
def examples():
    return make_task("arithmetic").split("train")[:5]


@pytest.mark.parametrize("transport", ["object_store", "broadcast"])
def test_after_a_sync_the_workers_hold_the_learners_weights_exactly(cluster, lively, transport):
    import ray

    with pool(2, transport) as engines:
        try:
            model = lively[0]
            engines.update_weights(model, version=0)
            with torch.no_grad():  # an optimizer step's worth of change, then the next version
                for p in model.parameters():
                    p.add_(0.01)
            engines.update_weights(model, version=1)
            expected = model.state_dict()
            for state in ray.get([w.model_state.remote() for w in engines.workers]):
                assert state.keys() == expected.keys()
                for name, tensor in state.items():
                    assert torch.equal(tensor, expected[name]), name
            assert engines.last_sync["distributed/sync_mb"] > 0
            seconds = engines.last_sync["distributed/sync_s"]
            engines.update_weights(model, version=1)  # the same version again: nothing is sent
            assert engines.last_sync["distributed/sync_s"] == seconds
        finally:
            with torch.no_grad():
                for p in lively[0].parameters():
                    p.sub_(0.01)


def test_one_and_two_workers_sample_the_same_tokens(cluster, lively, examples):
    from rlvr.rollout.fast import FastEngine

    with pool(1) as one, pool(2) as two:
        for engine in (one, two):
            engine.update_weights(lively[0], version=0)
        a, b = generate(one, examples, 4, SAMPLING), generate(two, examples, 4, SAMPLING)
        local = generate(FastEngine(*lively), examples, 4, SAMPLING)  # and the driver's own engine
        assert tokens(a) == tokens(b) == tokens(local)
        assert len({tuple(c.token_ids) for g in a for c in g}) > len(examples)  # not copies of one sample
        for ga, gb in zip(a, b, strict=True):
            for ca, cb in zip(ga, gb, strict=True):
                assert ca.logprobs == pytest.approx(cb.logprobs, abs=1e-5)


def test_a_worker_that_dies_mid_call_is_replaced_and_its_share_redone(cluster, lively, examples):
    import ray

    with pool(2) as engines:
        engines.update_weights(lively[0], version=0)
        before = generate(engines, examples, 4, SAMPLING)
        dead = ray.get(engines.workers[0].pid.remote())
        ray.get(engines.workers[0].crash_on_next_call.remote())
        after = generate(engines, examples, 4, SAMPLING)
        assert tokens(after) == tokens(before)
        assert engines.restarts == 1 and ray.get(engines.workers[0].pid.remote()) != dead


def test_generation_before_any_sync_is_refused(cluster):
    from rlvr.errors import TrainingError

    with pool(1) as engines:
        with pytest.raises(TrainingError, match="before the first weight sync"):
            engines.continue_ids([[1, 2]], SAMPLING)


def test_a_worker_that_died_between_calls_is_replaced_at_the_next_sync(cluster, lively, examples):
    import ray

    with pool(2) as engines:
        engines.update_weights(lively[0], version=0)
        before = generate(engines, examples, 4, SAMPLING)
        ray.kill(engines.workers[1], no_restart=True)
        engines.update_weights(lively[0], version=1)  # the same weights, a new version: the dead worker is replaced
        assert engines.restarts == 1
        assert tokens(generate(engines, examples, 4, SAMPLING)) == tokens(before)
