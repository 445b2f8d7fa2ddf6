"""Python tool: the model writes a fenced ```python block, the sandbox runs it, the output comes
back in an ```output block (the format of ToRA and ZeroTIR), and the model continues.

A turn ends at a closing fence (``stop``). The last complete ```python / ```py block of the turn
runs in the episode's own sandbox process, whose globals persist across the episode's calls.
A turn that closes some other block (```text, or the bare opening fence of a block the model
has just begun) gets no observation and the model simply continues.
"""

import re

from rlvr.envs import ENVS, StepResult
from rlvr.tools.python_sandbox import PythonSandbox, SandboxLimits
from rlvr.types import Example, Messages

TOOL_HELP = (
    "You may run Python to help: write code in a ```python block; when the block closes it runs and "
    "its printed output appears in an ```output block. Give the final answer in \\boxed{}."
)
CODE_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


class PythonEnv:
    stop = ["```\n"]

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.sandbox: PythonSandbox | None = None  # started at the first call only

    def reset(self, example: Example) -> Messages:
        *rest, last = example.prompt
        return [*rest, {**last, "content": f"{last['content']}\n\n{TOOL_HELP}"}]

    def step(self, text: str) -> StepResult:
        match = CODE_BLOCK.search(text)
        if match is None:  # not the end of a python block: let the model go on
            return StepResult(observation="", done=False)
        if self.sandbox is None:
            self.sandbox = PythonSandbox(self.limits)
        result = self.sandbox.run(match.group(1))
        body = result.output.rstrip("\n")
        return StepResult(
            observation=f"```output\n{body}\n```\n",
            done=False,
            tool="python",
            error=result.error,
            info={"seconds": result.seconds},
        )

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


@ENVS.register("python")
def python_env(tools) -> PythonEnv:
    return PythonEnv(
        SandboxLimits(
            timeout_s=tools.timeout_s,
            memory_mb=tools.memory_mb,
            max_output_chars=tools.max_output_chars,
            packages=tuple(tools.packages),
        )
    )
