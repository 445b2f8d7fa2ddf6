import math
import re

import pytest

import rlvr.rewards
from rlvr.errors import ConfigError, RewardError
from rlvr.registry import Registry
from rlvr.rewards import load_reward_plugins, score
from rlvr.types import Example

EXAMPLES = [Example(id="a", prompt=[], answer="4"), Example(id="b-17", prompt=[], answer="5")]


@pytest.fixture
def registry(monkeypatch):
    """A fresh REWARDS for tests that register their own functions."""
    fresh = Registry("reward")
    monkeypatch.setattr(rlvr.rewards, "REWARDS", fresh)
    return fresh


def test_weighted_total_and_components():
    completions = ["\\boxed{4}", "maybe 6"]
    totals, parts = score(completions, EXAMPLES, [("math", 1.0), ("boxed_format", 0.5)])
    assert parts == {"math": [1.0, 0.0], "boxed_format": [1.0, 0.0]}
    assert totals == [1.5, 0.0]


def test_unknown_reward_is_config_error():
    with pytest.raises(ConfigError, match="unknown reward 'maths'"):
        score(["x"], EXAMPLES[:1], [("maths", 1.0)])


def test_reward_listed_twice():
    with pytest.raises(ConfigError, match="listed once"):
        score(["x"], EXAMPLES[:1], [("math", 1.0), ("math", 0.5)])


def test_raising_reward_names_reward_example_and_completion(registry):
    @registry.register("fragile")
    def fragile(completion: str, example: Example) -> float:
        if example.id == "b-17":
            raise KeyError("numbers")
        return 1.0

    long_completion = "The answer\nis " + "x" * 500
    with pytest.raises(RewardError) as e:
        score(["fine", long_completion], EXAMPLES, [("fragile", 1.0)])
    message = str(e.value)
    assert "'fragile'" in message and "KeyError" in message and "'b-17'" in message
    assert repr(long_completion[:200]) in message and "x" * 201 not in message
    assert "\n" not in message
    assert isinstance(e.value.__cause__, KeyError)


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "1.0", [1.0]])
def test_bad_return_values_are_errors(registry, bad):
    registry.register("bad")(lambda completion, example: bad)
    with pytest.raises(RewardError, match=r"reward 'bad' returned .* on example 'a', completion 'c'"):
        score(["c"], EXAMPLES[:1], [("bad", 1.0)])


def test_bools_and_ints_are_numbers(registry):
    registry.register("flag")(lambda completion, example: completion.response == "yes")
    registry.register("one")(lambda completion, example: 1)
    assert score(["yes", "no"], EXAMPLES, [("flag", 1.0), ("one", 0.5)])[0] == [1.5, 0.5]


def test_plugin_file_registers_once(registry, tmp_path):
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(
        "from rlvr.rewards import REWARDS\n\n"
        "@REWARDS.register('short')\n"
        "def short(completion, example):\n"
        "    return 1.0 if len(completion.response) < 5 else 0.0\n"
    )
    load_reward_plugins([str(plugin)])
    load_reward_plugins([str(plugin)])  # a second load is a no-op, not "registered twice"
    assert score(["ok", "too long"], EXAMPLES, [("short", 2.0)])[0] == [2.0, 0.0]


def test_plugin_errors(registry, tmp_path):
    with pytest.raises(ConfigError, match=re.escape("reward plugin file not found: missing/rewards.py")):
        load_reward_plugins(["missing/rewards.py"])
    with pytest.raises(ConfigError, match=re.escape("'no_such_pkg.rewards' not found")):
        load_reward_plugins(["no_such_pkg.rewards"])
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=re.escape("broken.py failed to import: RuntimeError: boom")):
        load_reward_plugins([str(broken)])


def test_dotted_module_plugin(registry):
    load_reward_plugins(["json"])  # any importable module; it registers nothing
    assert registry.names() == []
