"""The search environment answers a <search> call with BM25 hits from the example's corpus."""

import pytest

from rlvr.config import ToolsConfig
from rlvr.envs.rollout import ENVS
from rlvr.errors import DataError
from rlvr.tasks import make_task
from rlvr.types import Example


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # corpus and index in a private cache
        mp.setenv("RLVR_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield make_task("multihop", train_size=20, eval_size=10).split("train")[0]


def test_a_search_call_returns_the_next_hop_document(example):
    env = ENVS.get("search")(ToolsConfig(env="search", top_k=3))
    prompt = env.reset(example)
    assert prompt == example.prompt  # the task's own prompt already explains the tool
    first_entity, second_entity = example.meta["path"][:2]
    result = env.step(f"I should look it up. <search>{first_entity}</search>")
    assert result.tool == "search" and result.error is None and not result.done
    assert result.observation.startswith("\n<result>\n") and result.observation.endswith("</result>\n")
    assert second_entity in result.observation  # the first hop's fact names the next entity


def test_a_call_without_a_query_is_a_counted_error(example):
    env = ENVS.get("search")(ToolsConfig(env="search"))
    env.reset(example)
    result = env.step("no tags here</search>")
    assert result.error == "malformed" and "<search>" in result.observation


def test_an_example_without_a_corpus_names_the_example():
    env = ENVS.get("search")(ToolsConfig(env="search"))
    with pytest.raises(DataError, match="'q-7'"):
        env.reset(Example(id="q-7", prompt=[{"role": "user", "content": "?"}], answer="x"))
