import subprocess
import sys
from importlib.util import find_spec

import pytest
import yaml

from rlvr.config import load_config
from rlvr.errors import ConfigError, RewardError
from rlvr.rewards import REWARDS, reward_terms, score
from rlvr.rewards.json_output import extract_json, json_equal
from rlvr.types import Example

needs_jsonschema = pytest.mark.skipif(
    find_spec("jsonschema") is None, reason="needs jsonschema (pip install jsonschema)"
)

PERSON = {"type": "object", "required": ["name", "age"], "properties": {"name": {"type": "string"},
          "age": {"type": "integer", "minimum": 0}}}  # fmt: skip
NO_JSON = (False, None)


def example(answer: str = "", **meta) -> Example:
    return Example(id="row-3", prompt=[], answer=answer, meta=meta)


@pytest.mark.parametrize(
    "response, expected",
    [
        ('```json\n{"a": 1}\n```', (True, {"a": 1})),
        ('```JSON {"a": 1}```', (True, {"a": 1})),
        ('First ```json\n{"a": 1}\n``` then ```json\n[2, 3]\n```', (True, [2, 3])),  # the last block
        ('```json\n{"a": 1,}\n```\nor maybe {"b": 2}', NO_JSON),  # a broken last block is no JSON
        ('```json\n{"a": 1}\n```\nAlso {"b": 2}', (True, {"a": 1})),  # a fence beats bare JSON after it
        ('```json\n"just a string"\n```', (True, "just a string")),  # a fenced scalar is JSON
        ("```json\nnull\n```", (True, None)),
        ('```jsonl\n{"a": 1}\n```', (True, {"a": 1})),  # not a json fence: the bare object is read
        ('```\n{"a": 1}\n```', (True, {"a": 1})),
        ('Here it is: {"a": {"b": [1, 2]}} as asked.', (True, {"a": {"b": [1, 2]}})),  # trailing text
        ('{"a": 1} and then {"b": 2}', (True, {"b": 2})),  # the last top-level value
        ('{"brace": "}{", "q": "say \\"}\\""}', (True, {"brace": "}{", "q": 'say "}"'})),  # braces in strings
        ('{"path": "C:\\\\"} done', (True, {"path": "C:\\"})),  # an escaped backslash ends the string
        ('He said "hi {" then {"a": 1}', (True, {"a": 1})),  # prose quotes and braces
        ('the set {1, 2 is unclosed, but {"a": 1} is fine', (True, {"a": 1})),
        ('{"user": {"id": 1}, oops}', NO_JSON),  # a broken object does not lend its inner one
        ('[1, 2] then {"a": 1, "b": [1, 2,]}', (True, [1, 2])),  # ... but an earlier good one counts
        ('{"a": 1}\nSee [1].', (True, [1])),  # limit: a citation after the JSON is the last JSON
        ("{'a': 1}", NO_JSON),  # single quotes are not JSON
        ('{"a": NaN}', NO_JSON),
        ('{"a": 1} // comment', (True, {"a": 1})),
        ("The answer is 42.", NO_JSON),  # bare numbers are not read outside a fence
        ("", NO_JSON),
        ("[" * 5000 + "]" * 5000, NO_JSON),  # nesting past Python's recursion limit
    ],
)
def test_extract_json(response, expected):
    assert extract_json(response) == expected


def test_json_equal():
    assert json_equal({"a": [1, {"b": 2.0}]}, {"a": [1, {"b": 2}]})
    assert json_equal({"x": 1, "y": 2}, {"y": 2, "x": 1})
    assert not json_equal({"a": True}, {"a": 1})
    assert not json_equal([0], [False])
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal({"a": None}, {})
    assert not json_equal("1", 1)


def test_json_parses():
    reward = REWARDS.get("json_parses")
    assert reward('{"a": 1}', example()) == 1.0
    assert reward("```json\n[]\n```", example()) == 1.0
    assert reward("{a: 1}", example()) == 0.0


@needs_jsonschema
@pytest.mark.parametrize(
    "response, expected",
    [
        ('```json\n{"name": "Ada", "age": 36}\n```', 1.0),
        ('Sure! {"name": "Ada", "age": 36, "extra": true} Hope that helps.', 1.0),
        ('{"name": "Ada"}', 0.0),  # required key missing
        ('{"name": "Ada", "age": -1}', 0.0),  # minimum
        ('{"name": "Ada", "age": 36.5}', 0.0),  # not an integer
        ('{"name": "Ada", "age": "36"}', 0.0),
        ('[{"name": "Ada", "age": 36}]', 0.0),  # an array, not an object
        ('{"name": "Ada", "age": 36', 0.0),  # cut off: no JSON
        ("no json at all", 0.0),
    ],
)
def test_json_schema_from_the_recipe(response, expected):
    assert REWARDS.get("json_schema")(response, example(), schema=PERSON) == expected


@needs_jsonschema
def test_schema_from_the_example_and_the_recipe_wins():
    reward = REWARDS.get("json_schema")
    wants_list = example(schema={"type": "array", "items": {"type": "integer"}})
    assert reward("[1, 2, 3]", wants_list) == 1.0
    assert reward('[1, "2"]', wants_list) == 0.0
    assert reward('{"name": "Ada", "age": 1}', wants_list, schema=PERSON) == 1.0  # the recipe's schema is used
    assert reward("[1]", example(schema=True)) == 1.0 and reward("[1]", example(schema=False)) == 0.0


@needs_jsonschema
def test_match_also_requires_the_gold_json():
    reward = REWARDS.get("json_schema")
    gold = example(answer='{"age": 36, "name": "Ada"}')
    assert reward('{"name": "Ada", "age": 36.0}', gold, schema=PERSON, match=True) == 1.0
    assert reward('{"name": "Ada", "age": 37}', gold, schema=PERSON, match=True) == 0.0
    assert reward('{"name": "Ada", "age": 37}', gold, schema=PERSON) == 1.0  # without match: the schema only
    assert reward('{"name": "Ada", "age": 36}', gold, match=True) == 1.0  # no schema: equality alone
    assert reward('{"name": "Ada"}', gold, match=True) == 0.0
    with pytest.raises(RewardError, match="example 'row-3': answer 'Ada' is not JSON"):
        reward('{"name": "Ada"}', example(answer="Ada"), match=True)


@needs_jsonschema
@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "objekt"}, "is not a valid JSON Schema: 'objekt' is not valid"),
        ({"required": "a"}, "is not a valid JSON Schema: 'a' is not of type 'array' \\(at required\\)"),
        ("object", "must be a JSON Schema object \\(or true/false\\), got str"),
        ({"type": {1, 2}}, "is not JSON data"),
    ],
)
def test_bad_example_schema_is_a_reward_error_naming_the_example(schema, message):
    with pytest.raises(RewardError, match=f"example 'row-3': meta\\['schema'\\] {message}"):
        REWARDS.get("json_schema")('{"a": 1}', example(schema=schema))


@needs_jsonschema
def test_a_remote_ref_is_never_fetched():
    remote = example(schema={"$ref": "https://example.com/person.json"})
    with pytest.raises(RewardError, match="Unresolvable: https://example.com/person.json on example 'row-3'"):
        score(['{"a": 1}'], [remote], [("json_schema", 1.0)])
    local = example(schema={"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}})
    assert REWARDS.get("json_schema")('{"a": 1}', local) == 1.0
    assert REWARDS.get("json_schema")('{"a": "1"}', local) == 0.0


def test_no_schema_anywhere_is_a_reward_error():
    with pytest.raises(RewardError, match="example 'row-3'.*no schema"):
        REWARDS.get("json_schema")('{"a": 1}', example())


@needs_jsonschema
def test_through_score_the_error_names_reward_and_example():
    examples = [example(schema={"type": "object"}), example(schema={"type": "nope"})]
    with pytest.raises(RewardError, match="reward 'json_schema' raised RewardError.*on example 'row-3'"):
        score(['{"a": 1}', '{"a": 1}'], examples, [("json_schema", 1.0)])


@needs_jsonschema
def test_a_recipe_can_use_them():
    entry = "{name: json_schema, schema: {type: object, required: [a]}, match: false}"
    config = load_config(None, [f"rewards=[{entry}, {{name: json_parses, weight: 0.1}}]"])
    assert config.rewards[0].params() == {"schema": {"type": "object", "required": ["a"]}, "match": False}
    terms = reward_terms(config.rewards)
    _, parts = score(['{"a": 1}', '{"b": 1}', "nothing"], [example()] * 3, terms)
    assert parts == {"json_schema": [1.0, 0.0, 0.0], "json_parses": [1.0, 1.0, 0.0]}


@needs_jsonschema
@pytest.mark.parametrize(
    "entry, message",
    [
        ("schema: {type: objekt}", "rewards\\[0\\].schema=.*not a valid JSON Schema"),
        ("schema: {properties: {a: {minimum: x}}}", "rewards\\[0\\].schema=.*\\(at properties/a/minimum\\)"),
        ("schema: [a]", "rewards\\[0\\].schema=.*valid dictionary"),
        ("schemas: {}", "unknown key 'rewards\\[0\\].schemas'"),
    ],
)
def test_an_invalid_recipe_schema_is_a_config_error_at_load(entry, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"rewards=[{{name: json_schema, {entry}}}]"])
    with pytest.raises(ConfigError, match=message.replace("rewards\\[0\\]", "rewards\\[1\\]")):
        reward_terms([("math", 1.0), ("json_schema", 1.0, yaml.safe_load(f"{{{entry}}}"))])


def test_the_schema_key_raises_no_warning():
    """pydantic warns that a field named ``schema`` shadows BaseModel.schema; rlvr silences that
    one warning at import (pytest resets warning filters per test, hence a fresh interpreter)."""
    code = "from rlvr.rewards import REWARDS; REWARDS.resolve('json_schema', {'schema': {}}, 'rewards[0]')"
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "shadows" not in run.stderr
