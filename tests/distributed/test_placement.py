"""distributed.backend=ray gives the one-process run's numbers: 1 learner + 1 rollout worker exactly,
2 learner ranks within float summation order; rollout workers sample placement-free; faults are
survived (rollout) or stop the run with one line (learner); resume is exact."""

import pytest
import torch
from safetensors.torch import load_file

from rlvr.checkpoint import list_checkpoints
from rlvr.config import load_config
from rlvr.errors import ConfigError, TrainingError
from rlvr.metrics import read_metrics
from rlvr.trainer import train

RAY = ("distributed.backend=ray",)
STEPS = ("train.steps=3", "checkpoint.every=1", "checkpoint.export_final=false")
HALF = ("distributed.learner_cpus=0.5", "distributed.worker_cpus=0.5")  # 2 ranks + 2 workers on 2 CPUs


def comparable(run_dir):
    rows = read_metrics(run_dir / "metrics.jsonl")
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/", "distributed/"))} for r in rows]


def weights(run_dir):
    return load_file(str(list_checkpoints(run_dir)[-1] / "model.safetensors"))


def assert_same_run(a, b, rel=0.0, abs=0.0):
    rows_a, rows_b = comparable(a), comparable(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_a[key] == pytest.approx(row_b[key], rel=rel, abs=abs), key
    wa, wb = weights(a), weights(b)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=rel, atol=abs)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_config_module):
    return train(tiny_config_module(*STEPS), tmp_path_factory.mktemp("none"))


@pytest.fixture(scope="module")
def tiny_config_module():
    from tests.conftest import TINY_OVERRIDES

    return lambda *o: load_config(None, [*TINY_OVERRIDES, *o])


def test_ray_with_one_rollout_worker_is_the_one_process_run(cluster, single, tiny_config_module, tmp_path):
    ray_run = train(tiny_config_module(*STEPS, *RAY), tmp_path / "ray")
    assert_same_run(single, ray_run)  # the same tokens, log-probs, losses and weights, bit for bit
    rows = read_metrics(ray_run / "metrics.jsonl")
    sync = [r["distributed/sync_mb"] for r in rows if "distributed/sync_mb" in r]
    assert sync and all(mb > 0 for mb in sync)


def test_two_learner_ranks_and_two_workers_match_one_process(cluster, tiny_config_module, tmp_path):
    """Summation order differs between 1 and 2 ranks; Adam turns a near-zero gradient's last bits into
    an lr-sized step, so the comparison runs at lr 1e-3 (at the tests' usual 0.1, 7 of 786k weights
    differ by 1.5e-4 after 3 steps)."""
    slow = (*STEPS, "optim.lr=0.001")
    single = train(tiny_config_module(*slow), tmp_path / "none")
    ranks = train(tiny_config_module(*slow, *RAY, *HALF, "distributed.learners=2",
                                     "distributed.rollout_workers=2"), tmp_path / "ranks")  # fmt: skip
    assert_same_run(single, ranks, rel=1e-4, abs=1e-6)


def test_a_rank_without_rows_still_joins_the_step(cluster, tiny_config_module, tmp_path):
    """One row per optimizer step (32 mini-batches) and 2 ranks: rank 0 holds no rows in any update,
    with the reference model's KL in the loss; the run still equals one process."""
    slow = ("train.steps=2", "checkpoint.export_final=false", "optim.lr=0.001", "train.mini_batches=32",
            "algo.kl_coef=0.1")  # fmt: skip
    single = train(tiny_config_module(*slow), tmp_path / "none")
    ranks = train(tiny_config_module(*slow, *RAY, "distributed.learners=2"), tmp_path / "ranks")
    assert_same_run(single, ranks, rel=1e-4, abs=1e-6)


FSDP2 = (*RAY, *HALF, "distributed.learners=2", "distributed.strategy=fsdp2")
# lr: see test_two_learner_ranks_and_two_workers_match_one_process; a warm-up, so a resumed schedule shows
SLOW = (*STEPS, "optim.lr=0.001", "optim.warmup_steps=2")


@pytest.fixture(scope="module")
def fsdp2_run(cluster, tmp_path_factory, tiny_config_module):
    return train(tiny_config_module(*SLOW, *FSDP2, "distributed.rollout_workers=2"), tmp_path_factory.mktemp("fsdp2"))


def test_fsdp2_ranks_match_one_process(fsdp2_run, tiny_config_module, tmp_path):
    single = train(tiny_config_module(*SLOW), tmp_path / "none")
    assert_same_run(single, fsdp2_run, rel=1e-4, abs=1e-6)


def test_fsdp2_killed_driver_resumes_exactly(fsdp2_run, tiny_config_module, tmp_path):
    """The checkpoint gathers the sharded optimizer state; the resumed ranks shard it again."""
    overrides = (*SLOW, *FSDP2, "distributed.rollout_workers=2")
    stopped = train(tiny_config_module(*overrides), tmp_path / "resumed", stop_after=2)
    resumed = train(tiny_config_module(*overrides), stopped, resume=True)
    assert_same_run(fsdp2_run, resumed)


@pytest.mark.parametrize(
    "layout",
    [("rollout.group_size=7", "train.mini_batches=4", "train.micro_batch_size=1"),  # 7 rows: 4 micro-batches against 3
     ("train.mini_batches=32",),  # one row an update: the other rank runs it weighted zero
     ("train.precision=bf16",),  # prompts through rlvr's attention, which keeps their keys (PromptCapture)
     ("rollout.max_new_tokens=1", "train.micro_batch_size=3")],  # one-token rows: no layer pass of their own
    ids=["uneven", "empty", "bf16", "one-token"],
)  # fmt: skip
def test_fsdp2_ranks_with_fewer_or_no_rows_join_every_layer_pass(cluster, tiny_config_module, tmp_path, layout):
    slow = ("train.steps=2", "checkpoint.export_final=false", "optim.lr=0.001", "algo.kl_coef=0.1", *layout)
    bf16 = "train.precision=bf16" in layout  # bf16 products round differently in another batch shape: so
    reference = (*RAY, *HALF, "distributed.learners=2") if bf16 else ()  # against DDP's ranks, the same shapes
    single = train(tiny_config_module(*slow, *reference), tmp_path / "reference")
    ranks = train(tiny_config_module(*slow, *FSDP2), tmp_path / "ranks")
    assert_same_run(single, ranks, rel=1e-4, abs=1e-6)


REWARD_TASKS = (*RAY, "distributed.rollout_workers=0", "distributed.reward_workers=3", "distributed.reward_cpus=0.5")


def test_rewards_as_ray_tasks_are_the_one_process_rewards(cluster, single, tiny_config_module, tmp_path):
    assert_same_run(single, train(tiny_config_module(*STEPS, *REWARD_TASKS), tmp_path / "tasks"))


def test_reward_pool_deals_whole_groups_in_order():
    from rlvr.distributed.reward_pool import deal

    assert deal([8, 8, 8, 8], 3) == [[0, 1], [2], [3]]
    assert deal([3, 9, 2, 2], 2) == [[0, 1], [2, 3]]  # runs of about equal rows, never a group split
    assert deal([5], 4) == [[0]]


def test_a_reward_task_whose_process_dies_is_run_again(cluster, single, tiny_config_module, tmp_path, monkeypatch):
    """The reward kills its interpreter the first time it runs in a task (as a crashing sandbox or an
    out-of-memory kill would); Ray runs the task again and the run equals the undisturbed one."""
    import rlvr.distributed.reward_pool as reward_pool

    marker = tmp_path / "died"
    real = reward_pool.score_part

    def dies_once(completions, terms, verifier, group_size, plugins=()):
        import os

        if not marker.exists():
            marker.touch()
            os._exit(1)
        return real(completions, terms, verifier, group_size, plugins)

    monkeypatch.setattr(reward_pool, "score_part", dies_once)
    disturbed = train(tiny_config_module(*STEPS, *REWARD_TASKS), tmp_path / "disturbed")
    assert marker.exists()
    assert_same_run(single, disturbed)


def test_a_file_plugin_reward_reaches_the_reward_tasks(cluster, tiny_config_module, tmp_path):
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(
        "from rlvr.rewards import REWARDS\n\n"
        "@REWARDS.register('longer_than_one')\n"
        "def longer_than_one(completion, example) -> float:\n"
        "    return float(len(completion.response.strip()) > 1)\n"
    )
    overrides = (*STEPS, f"plugins=[{plugin}]", "rewards=[{name: longer_than_one, weight: 1.0}]")
    here = train(tiny_config_module(*overrides), tmp_path / "driver")
    assert_same_run(here, train(tiny_config_module(*overrides, *REWARD_TASKS), tmp_path / "tasks"))


def test_a_reward_that_raises_in_a_task_stops_the_run_with_its_one_line(
    cluster, tiny_config_module, tmp_path, monkeypatch
):
    from rlvr.errors import RewardError
    from rlvr.rewards import REWARDS

    if "raises_on_e" not in REWARDS:

        @REWARDS.register("raises_on_e")
        def raises_on_e(completion, example) -> float:
            if completion.response.lstrip()[:1].lower() == "e":
                raise ValueError("no e here")
            return 0.0

    rewards = "rewards=[{name: starts_with_a_or_e, weight: 1.0}, {name: raises_on_e, weight: 1.0}]"
    with pytest.raises(RewardError, match="reward 'raises_on_e' raised ValueError: no e here") as err:
        train(tiny_config_module(*STEPS, *REWARD_TASKS, rewards), tmp_path / "raises")
    assert "\n" not in str(err.value)


def test_broadcast_transport_and_a_killed_driver_resume_exactly(cluster, single, tiny_config_module, tmp_path):
    overrides = (*STEPS, *RAY, "distributed.transport=broadcast")
    stopped = train(tiny_config_module(*overrides), tmp_path / "resumed", stop_after=2)
    resumed = train(tiny_config_module(*overrides), stopped, resume=True)
    assert_same_run(single, resumed)


def test_a_rollout_worker_killed_mid_run_changes_nothing(cluster, single, tiny_config_module, tmp_path, monkeypatch):
    import ray

    from rlvr.distributed.rollout_pool import RolloutPool

    real = RolloutPool.update_weights

    def crash_at_step_two(self, model, version=None):
        real(self, model, version)
        if version == 1 and not self.restarts:  # step 2's rollout: the worker dies inside its next call
            ray.get(self.workers[0].crash_on_next_call.remote())

    monkeypatch.setattr(RolloutPool, "update_weights", crash_at_step_two)
    disturbed = train(tiny_config_module(*STEPS, *RAY), tmp_path / "disturbed")
    assert_same_run(single, disturbed)


def test_cluster_too_small_is_refused_naming_what_is_missing(cluster, tiny_config_module, tmp_path):
    config = tiny_config_module(*STEPS, *RAY, "distributed.rollout_workers=3")
    with pytest.raises(ConfigError, match=r"need 3 CPU \(the cluster has 2\)"):
        train(config, tmp_path / "big")
    assert not (tmp_path / "big").exists()  # a refused start leaves nothing behind


def test_a_dead_learner_rank_stops_the_run_with_one_line(cluster, tiny_config_module, tmp_path, monkeypatch):
    import ray

    from rlvr.distributed.learner import LearnerGroup

    real = LearnerGroup.update

    def kill_rank_one(self, run, *args, **kwargs):
        if run.step == 2:
            ray.kill(self.ranks[0], no_restart=True)
        return real(self, run, *args, **kwargs)

    monkeypatch.setattr(LearnerGroup, "update", kill_rank_one)
    config = tiny_config_module(*STEPS, *RAY, "distributed.learners=2", "distributed.timeout_s=20")
    with pytest.raises(TrainingError, match="learner rank 1 failed") as err:
        train(config, tmp_path / "dead")
    assert "rlvr train --resume" in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in list_checkpoints(tmp_path / "dead")] == ["step-000001"]  # nothing half-written


def test_a_sync_that_silently_fails_is_caught_by_the_mismatch_bound(cluster, tiny_config_module, tmp_path, monkeypatch):
    import rlvr.distributed.transport as transport

    real = transport.flat_buckets

    def corrupted(tensors, bucket_bytes):  # the sync "succeeds", with weights that are not the learner's
        generator = torch.Generator().manual_seed(0)
        return [f + 0.5 * torch.randn(f.shape, generator=generator) for f in real(tensors, bucket_bytes)]

    monkeypatch.setattr(transport, "flat_buckets", corrupted)
    config = tiny_config_module(*STEPS, *RAY, "distributed.max_logprob_mismatch=0.01")
    with pytest.raises(TrainingError, match="step 1: the rollout's log-probs differ from the learner's by"):
        train(config, tmp_path / "stale")
    monkeypatch.setattr(transport, "flat_buckets", real)
    train(config, tmp_path / "synced")  # the same bound with a real sync: the run goes through


def test_config_refusals():
    with pytest.raises(ConfigError, match="distributed.learners needs distributed.backend=ray"):
        load_config(None, ["distributed.learners=2"])
    with pytest.raises(ConfigError, match="critic.model is not sharded over learner ranks"):
        load_config("ppo", ["distributed.backend=ray", "distributed.learners=2"])
    with pytest.raises(ConfigError, match="max_off_policy_steps"):
        load_config(None, ["distributed.backend=ray", "distributed.max_off_policy_steps=1"])
    with pytest.raises(ConfigError, match="fsdp2 shards over learner ranks: it needs distributed.learners >= 2"):
        load_config(None, [*RAY, "distributed.strategy=fsdp2"])
    with pytest.raises(ConfigError, match="fsdp2 does not take model.lora_rank"):
        load_config(None, [*RAY, "distributed.learners=2", "distributed.strategy=fsdp2", "model.lora_rank=8"])


PIPELINED = (*RAY, "distributed.max_off_policy_steps=1", "algo.tis_cap=2.0")


def test_one_step_off_policy_pipelining_trains_one_step_stale_and_resumes_exactly(
    cluster, tiny_config_module, tmp_path
):
    overrides = ("train.steps=4", "checkpoint.every=1", "checkpoint.export_final=false", "eval.every=2", *PIPELINED)
    straight = train(tiny_config_module(*overrides), tmp_path / "straight")
    rows = [r for r in read_metrics(straight / "metrics.jsonl") if "distributed/staleness" in r]
    assert [r["distributed/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]  # step 1 has nothing ahead of it
    assert all("tis/weight_mean" in r for r in rows)  # the truncated IS weight against the rollout policy
    stopped = train(tiny_config_module(*overrides), tmp_path / "resumed", stop_after=3)
    resumed = train(tiny_config_module(*overrides), stopped, resume=True)
    assert_same_run(straight, resumed)
    # it is not the on-policy run: the batches of steps 2-4 were sampled before the step before them trained
    on_policy = train(tiny_config_module(*overrides[:-2], "algo.tis_cap=2.0"), tmp_path / "on")
    assert any(not torch.equal(weights(on_policy)[k], weights(straight)[k]) for k in weights(straight))


def test_pipelining_needs_workers_and_tis():
    with pytest.raises(ConfigError, match="needs distributed.rollout_workers >= 1"):
        load_config(None, [*PIPELINED, "distributed.rollout_workers=0"])
    with pytest.raises(ConfigError, match="needs algo.tis_cap"):
        load_config(None, [*RAY, "distributed.max_off_policy_steps=1"])
    with pytest.raises(ConfigError, match="max_off_policy_steps needs distributed.backend=ray"):
        load_config(None, ["distributed.max_off_policy_steps=1", "algo.tis_cap=2"])
    with pytest.raises(ConfigError, match="transport=object_store"):
        load_config(None, [*PIPELINED, "distributed.transport=broadcast"])


def test_without_ray_the_message_names_the_extra(monkeypatch):
    import sys

    from rlvr.distributed.cluster import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"pip install 'rlvr\[distributed\]'"):
        import_ray()
