"""Config loading: recipes, overrides, and one-line messages that name the key."""

import pytest

from rlvr.config import apply_override, available_recipes, load_config, to_yaml, validate
from rlvr.errors import ConfigError


def test_default_recipe_loads_with_the_documented_settings():
    config = load_config()
    assert config.recipe == "grpo"
    assert config.model.name == "smollm2-135m-instruct"
    assert config.task.name == "arithmetic" and config.task.params()["digits"] == 1
    assert (config.rollout.prompts_per_step, config.rollout.group_size) == (4, 8)
    assert [r.name for r in config.rewards] == ["math", "boxed_format"]


def test_every_bundled_recipe_validates():
    for name in available_recipes():
        load_config(name)


def test_overrides_parse_yaml_values():
    config = load_config(None, ["train.steps=3", "optim.lr=1e-4", 'rollout.stop=["\\n\\n"]', "log.console=false"])
    assert config.train.steps == 3 and config.optim.lr == 1e-4
    assert config.rollout.stop == ["\n\n"] and config.log.console is False


def test_resolved_config_round_trips_through_yaml():
    import yaml

    config = load_config(None, ["train.steps=7"])
    assert validate(yaml.safe_load(to_yaml(config))) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stepz=3"], r"unknown key 'train.stepz'. Did you mean steps\? Valid keys here: device, fp32_logits, "),
        (["optim.learning_rate=1"], r"unknown key 'optim.learning_rate'.* Valid keys here: betas, lr, "),
        (["modle.name=x"], r"unknown key 'modle'. Did you mean model"),
        (["train.steps=abc"], r"train.steps='abc': Input should be a valid integer"),
        (["optim.lr=-1"], r"optim.lr=-1: Input should be greater than 0"),
        (["algo.policy_loss.clip_low=-0.2"], r"algo.policy_loss.clip_low=-0.2: Input should be greater than 0"),
        (["algo.advantage=grpoo"], r"^algo.advantage: unknown advantage estimator 'grpoo'. Did you mean grpo"),
        (
            ["algo.policy_loss=ppo"],
            r"^algo.policy_loss: unknown policy loss 'ppo'. Did you mean .*ppo_clip.*\? Valid: .*ppo_clip",
        ),
        (["rewards=[{name: mth}]"], r"^rewards\[0\].name: unknown reward 'mth'. Did you mean math\?"),
        (["task.digit=2"], r"unknown key 'task.digit' for task 'arithmetic'. Did you mean digits\?"),
        (["task.name=countdwn"], r"unknown task 'countdwn'. Did you mean countdown\b"),
        (["train.mini_batches=5"], r"train.mini_batches=5 must divide the 32 completions per step"),
        (["train.steps"], r"override 'train.steps' is not of the form key=value"),
        (["train.steps.x=1"], r"override train.steps.x: train.steps is not a section"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_unknown_recipe_and_missing_file():
    with pytest.raises(
        ConfigError, match=r"unknown recipe 'grp'. Did you mean grpo, (s_grpo, )?dr_grpo\? Available: .*cispo, "
    ):
        load_config("grp")
    with pytest.raises(ConfigError, match=r"^recipe file not found: nowhere/x.yaml$"):
        load_config("nowhere/x.yaml")


def test_a_recipe_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="a recipe must be a mapping of sections, got list"):
        load_config(str(path))


def test_apply_override_creates_sections():
    raw: dict = {}
    apply_override(raw, "task.path=data/x.jsonl")
    assert raw == {"task": {"path": "data/x.jsonl"}}
