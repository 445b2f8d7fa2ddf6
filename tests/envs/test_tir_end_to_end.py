"""Multi-turn training end to end on tiny-random with the real Python sandbox: several turns per
episode, hostile code in some of them, and the run goes on and learns."""

from rlvr.envs import ENVS, StepResult
from rlvr.envs.python_env import PythonEnv
from rlvr.metrics import read_metrics
from rlvr.tools.python_sandbox import SandboxLimits
from rlvr.trainer import train

HOSTILE = [
    "1/0",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "x = bytearray(10**10)",
]


class EveryTurnPython(PythonEnv):
    """tiny-random never writes a code fence: treat every turn ending at a space as a call whose code
    is derived from the turn, every second one hostile (killing the trainer, a memory bomb)."""

    stop = [" "]

    def step(self, text: str) -> StepResult:
        if self.sandbox is None:
            from rlvr.tools.python_sandbox import PythonSandbox

            self.sandbox = PythonSandbox(self.limits)
        self.calls = getattr(self, "calls", 0) + 1
        code = f"n = {len(text)}\nprint(n * 2)" if self.calls % 2 else HOSTILE[len(text) % 3]
        result = self.sandbox.run(code)
        return StepResult(f"\n```output\n{result.output}```\n", done=False, tool="python", error=result.error)


if "test_every_turn_python" not in ENVS.names():
    ENVS.register("test_every_turn_python")(
        lambda tools: EveryTurnPython(SandboxLimits(timeout_s=tools.timeout_s, memory_mb=tools.memory_mb))
    )


def test_multi_turn_run_with_the_sandbox_survives_hostile_code(tiny_config, tmp_path):
    config = tiny_config(
        "tools.env=test_every_turn_python",
        "tools.max_turns=3",
        "tools.max_total_tokens=48",
        "rollout.max_new_tokens=6",
        "rollout.prompts_per_step=2",
        "tools.timeout_s=3",
        "train.steps=3",
        "eval.before=true",
        "log.samples_every=1",
        "checkpoint.export_final=false",
    )
    run_dir = train(config, tmp_path / "run")
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "train/reward" in r]
    assert len(rows) == 3  # hostile code never stopped the run
    assert all(r["tool/call_rate"] > 0.5 for r in rows)
    assert max(r["tool/turns"] for r in rows) > 1
    assert all(0 < r["tool/error_rate"] < 1 for r in rows)  # hostile calls reported, the others ran
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval/accuracy" in r]
    assert len(evals) == 2 and all("eval/tool/call_rate" in r for r in evals)
    samples = (run_dir / "samples.jsonl").read_text()
    assert "```output" in samples and "ZeroDivisionError" in samples


def test_multi_turn_training_learns(tiny_config, tmp_path):
    """The toy reward scores the model's own text across turns; GRPO lifts it as in single-turn."""
    from tests.envs.test_multi_turn import EchoEnv  # noqa: F401 - registers test_echo

    config = tiny_config(
        "tools.env=test_echo",
        "tools.max_turns=3",
        "tools.max_total_tokens=32",
        "rollout.max_new_tokens=4",
        # steps to a mean reward over 0.7 vary with float rounding at this lr (9-22 at seeds 1-5;
        # 21 or 26 at seed 0, padded or packed update): 30 leaves room
        "train.steps=30",
        "checkpoint.export_final=false",
    )
    run_dir = train(config, tmp_path / "run")
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "train/reward" in r]
    assert max(r["tool/turns"] for r in rows) > 1.5
    rewards = [r["train/reward"] for r in rows]
    assert sum(rewards[:3]) / 3 < 0.3 and sum(rewards[-3:]) / 3 > 0.7
