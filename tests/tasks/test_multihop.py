import json

import pytest

from rlvr.errors import ConfigError, DataError
from rlvr.rewards import REWARDS, score
from rlvr.rewards.exact_match import extract_text_answer, normalize_answer
from rlvr.tasks import make_task
from rlvr.tasks.multihop import SEARCH_CALL_HELP, chains, question_text
from rlvr.tools.search import SearchIndex
from rlvr.types import Example


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("rlvr-cache")
        mp.setenv("RLVR_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def task(cache):
    return make_task("multihop", train_size=300, eval_size=100)


def corpus_docs(path: str) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {doc["id"]: doc for doc in map(json.loads, f)}


def question(ex: Example) -> str:
    return ex.prompt[0]["content"].split("Question: ", 1)[1]


def test_deterministic_given_seed(task, cache):
    again = make_task("multihop", train_size=300, eval_size=100)
    assert task.split("train") == again.split("train") and task.split("eval") == again.split("eval")
    other = make_task("multihop", train_size=300, eval_size=100, seed=1)
    assert {question(ex) for ex in other.split("eval")} != {question(ex) for ex in task.split("eval")}
    corpus = task.split("eval")[0].meta["corpus"]
    assert other.split("eval")[0].meta["corpus"] != corpus
    assert sorted(p.name for p in (cache / "multihop").iterdir()) == sorted(  # no temp files left
        {corpus.rsplit("/", 1)[1], other.split("eval")[0].meta["corpus"].rsplit("/", 1)[1]}
    )


def test_examples_are_well_formed(task):
    assert task.name == "multihop" and task.verifier == "exact_match"
    train, held = task.split("train"), task.split("eval")
    assert len(train) == 300 and len(held) == 100
    assert len({question(ex) for ex in held}) == 100
    for ex in train + held:
        content = ex.prompt[0]["content"]
        assert SEARCH_CALL_HELP in content and "\\boxed{name}" in content
        assert ex.meta["hops"] == 2 and len(ex.meta["supporting"]) == 2
        assert ex.meta["path"][0] in content and ex.answer == ex.meta["path"][-1]
        assert ex.answer not in content


def test_splits_disjoint_by_entity(task):
    train, held = task.split("train"), task.split("eval")
    assert not {question(ex) for ex in train} & {question(ex) for ex in held}
    train_entities = {name for ex in train for name in ex.meta["path"]}
    held_entities = {name for ex in held for name in ex.meta["path"]}
    assert not train_entities & held_entities
    assert not {d for ex in train for d in ex.meta["supporting"]} & {d for ex in held for d in ex.meta["supporting"]}


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_every_question_is_solvable_with_the_search_tool(cache, hops):
    task = make_task("multihop", hops=hops, train_size=200, eval_size=100, seed=3)
    examples = task.split("eval") + list({question(ex): ex for ex in task.split("train")}.values())
    docs = corpus_docs(examples[0].meta["corpus"])
    with SearchIndex(examples[0].meta["corpus"], ":memory:") as index:
        for ex in examples:
            path, supporting = ex.meta["path"], ex.meta["supporting"]
            assert len(supporting) == hops and len(path) == hops + 1
            for entity, next_entity, doc_id in zip(path[:-1], path[1:], supporting, strict=True):
                doc = docs[doc_id]
                assert doc["title"] == entity and next_entity in doc["text"]  # the hop is stated in the doc
                top3 = [hit.id for hit in index.search(entity, k=3)]
                assert doc_id in top3, (question(ex), entity, top3)
            assert ex.answer == path[-1]


def test_question_wording():
    assert question_text(("founder", "birthplace", "country"), "Zentrix") == (
        "In which country is the city where the founder of Zentrix was born?"
    )
    assert question_text(("mentor", "mentor"), "Tala Voskin") == "Who was the mentor of the mentor of Tala Voskin?"
    assert ("founder", "birthplace") in chains(2) and ("birthplace", "mentor") not in chains(2)


def test_config_errors(cache):
    with pytest.raises(ConfigError, match="unknown key 'task.hop'"):
        make_task("multihop", hop=2)
    with pytest.raises(ConfigError, match="hops must be 1, 2 or 3"):
        make_task("multihop", hops=4)
    with pytest.raises(ConfigError, match="raise entities"):
        make_task("multihop", entities=20)
    with pytest.raises(ConfigError, match="distractors must be >= 0"):
        make_task("multihop", distractors=-1)
    with pytest.raises(DataError, match="eval_size=5000"):
        make_task("multihop", eval_size=5000)


def test_gold_answers_score_through_the_verifier(task):
    held = task.split("eval")[:5]
    completions = [f"<search>x</search> ... so the answer is \\boxed{{{ex.answer}}}" for ex in held]
    totals, _ = score(completions, held, [(task.verifier, 1.0)])
    assert totals == [1.0] * 5
    wrong = [f"\\boxed{{{held[(i + 1) % 5].answer}}}" for i in range(5)]
    assert score(wrong, held, [(task.verifier, 1.0)])[0] == [0.0] * 5


def gold(answer: str) -> Example:
    return Example(id="t", prompt=[], answer=answer)


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("\\boxed{Tala Voskin}", "Tala Voskin", 1.0),
        ("\\boxed{tala  voskin.}", "Tala Voskin", 1.0),
        ("\\boxed{\\text{Tala Voskin}}", "Tala Voskin", 1.0),
        ("\\boxed{\\textbf{\\text{Velmora}}}", "Velmora", 1.0),
        ("\\boxed{The Velmora}", "Velmora", 1.0),
        ("\\boxed{Velmora}", "the Velmora", 1.0),
        ("**Velmora**!", "Velmora", 1.0),
        ("Thinking...\n<answer> Velmora </answer>\nDone", "Velmora", 1.0),
        ("<answer>Dravonia</answer> then \\boxed{Velmora}", "Velmora", 1.0),  # the box wins
        ("I searched.\nVelmora\n\n", "Velmora", 1.0),  # last non-empty line
        ("O\u2019Brien", "O'Brien", 1.0),  # Unicode punctuation dropped like ASCII
        ("\\boxed{Voskin}", "Tala Voskin", 0.0),  # no partial credit
        ("The answer is Velmora.", "Velmora", 0.0),  # a sentence is not the answer
        ("\\boxed{Velmoran}", "Velmora", 0.0),
        ("\\boxed{the}", "the", 0.0),  # nothing left after normalisation
        ("", "Velmora", 0.0),
        ("\\boxed{Velmora", "Velmora", 0.0),  # unclosed box: last line is "\boxed{Velmora"
    ],
)
def test_exact_match(completion, answer, expected):
    assert REWARDS.get("exact_match")(completion, gold(answer)) == expected


def test_normalize_and_extract():
    assert normalize_answer("  An  Apple, the Pie!  ") == "apple pie"
    assert normalize_answer("\\mathrm{Zentrix}") == "zentrix"
    assert extract_text_answer("a\n\n") == "a"
    assert extract_text_answer("\\boxed{ }\n<answer> </answer>\nVelmora") == "Velmora"
    assert extract_text_answer(" \n\n ") is None
