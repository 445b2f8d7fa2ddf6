import json
import threading

import pytest

from rlvr.errors import DataError
from rlvr.tools.search import SearchHit, SearchIndex, format_hits, fts_query

DOCS = [
    {"id": "volcano", "title": "Mount Keral", "text": "Mount Keral is a volcano whose lava eruption buried a town."},
    {"id": "river", "title": "Ostra River", "text": "The Ostra is a river that floods the valley every spring."},
    {"id": "bakery", "title": "Pellin Bakery", "text": "Pellin Bakery sells rye bread and honey cake in the town."},
    {"id": "keral-town", "title": "Keralton", "text": "Keralton is a town at the foot of the mountain."},
    {"id": "library", "title": "Grand Library", "text": "The library keeps maps of the river and the volcano."},
]


def write(path, docs) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write(path, DOCS)
    return path


@pytest.fixture
def index(corpus):
    with SearchIndex(corpus, ":memory:") as idx:
        yield idx


def test_bm25_ranks_the_distinctive_document_first(index):
    assert len(index) == len(DOCS)
    assert index.search("lava eruption")[0].id == "volcano"
    assert index.search("rye bread")[0].id == "bakery"
    assert index.search("floods valley spring")[0].id == "river"
    assert {h.id for h in index.search("volcano")} == {"volcano", "library"}  # every match, none else
    hits = index.search("volcano lava")
    assert [h.id for h in hits] == ["volcano", "library"]
    assert all(isinstance(h, SearchHit) for h in hits)
    assert hits[0].score >= hits[1].score > 0  # higher is better


def test_title_outranks_a_mention(index):
    assert index.search("Keralton")[0].id == "keral-town"
    assert index.search("Mount Keral")[0].id == "volcano"


def test_k_is_respected(index):
    assert len(index.search("town river volcano", k=1)) == 1
    assert len(index.search("town river volcano", k=2)) == 2
    assert len(index.search("the", k=10)) <= len(DOCS)
    assert index.search("volcano", k=0) == []
    assert index.search("zzzunknownword") == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced volcano',
        "AND OR",
        "NOT",
        "NEAR(",
        "NEAR(volcano river, 2)",
        "*",
        "volc*",
        "a:b",
        "title:volcano",
        "--",
        "lava-eruption",
        "(((",
        "^volcano",
        "{title text}: river",
        "🌋🔥",
        "",
        "   \n\t",
        "x" * 10_000,
        "volcano " * 5_000,
        "é ü 東京 _ __init__",
    ],
)
def test_hostile_queries_never_raise(index, query):
    hits = index.search(query)
    assert isinstance(hits, list) and len(hits) <= 3


def test_operators_are_plain_words(index):
    assert fts_query('volcano AND "river" NEAR(x*') == '"volcano" OR "and" OR "river" OR "near" OR "x"'
    assert index.search("lava AND")[0].id == "volcano"
    assert index.search("lava-eruption")[0].id == "volcano"
    assert fts_query("") == "" and fts_query("🌋 -- *") == ""
    assert index.search("🌋 -- *") == []


def test_index_file_is_reused_then_rebuilt_when_the_corpus_changes(corpus, tmp_path):
    path = tmp_path / "cache" / "idx.sqlite"
    with SearchIndex(corpus, path) as idx:
        assert idx.search("lava")[0].id == "volcano"
    built = path.stat().st_ino, path.stat().st_mtime_ns
    with SearchIndex(corpus, path) as idx:  # unchanged corpus: the same file
        assert len(idx) == len(DOCS)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == built
    write(corpus, DOCS[:2] + [{"id": "new", "title": "Quorvath", "text": "A glacier of blue ice."}])
    with SearchIndex(corpus, path) as idx:
        assert len(idx) == 3
        assert idx.search("glacier")[0].id == "new"
        assert idx.search("bread") == []
    assert [p.name for p in path.parent.iterdir()] == ["idx.sqlite"]  # no temp files left


def test_corrupt_index_file_is_rebuilt(corpus, tmp_path):
    path = tmp_path / "idx.sqlite"
    path.write_bytes(b"not a database")
    with SearchIndex(corpus, path) as idx:
        assert idx.search("lava")[0].id == "volcano"


def test_default_index_lives_in_the_rlvr_cache(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path / "cache"))
    with SearchIndex(corpus) as idx:
        assert idx.index_path is not None and idx.index_path.is_file()
        assert idx.index_path.is_relative_to(tmp_path / "cache" / "search")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x", "title": "T"}', "field 'text' must be a string (missing)"),
        ('{"id": 3, "title": "T", "text": "t"}', "field 'id' must be a string (int 3)"),
        ('{"id": "", "title": "T", "text": "t"}', "field 'id' is empty"),
        ('{"id": "volcano", "title": "T", "text": "t"}', "duplicate document id 'volcano'"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(DOCS[0]) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        SearchIndex(path, tmp_path / "idx.sqlite")
    assert f"{path}:3: " in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "idx.sqlite").exists()
    with pytest.raises(DataError, match="invalid JSON|expected|must be|empty|duplicate"):
        SearchIndex(path, ":memory:")


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(DataError, match=r"search corpus not found: .*nope\.jsonl"):
        SearchIndex(tmp_path / "nope.jsonl", ":memory:")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no documents"):
        SearchIndex(tmp_path / "empty.jsonl", ":memory:")


def test_format_hits_is_compact_and_bounded():
    hits = [SearchHit("a", "Alpha", "First\n line.", 2.0), SearchHit("b", "Beta", "x" * 1000, 1.0)]
    text = format_hits(hits)
    assert text.splitlines()[0] == "[1] Alpha: First line."
    assert text.splitlines()[1].startswith("[2] Beta: xxx") and len(text.splitlines()[1]) == 300
    assert len(format_hits(hits * 20)) <= 1200
    assert len(format_hits(hits, max_chars=50)) == 50
    assert format_hits([]) == "No results."


def test_concurrent_searches_share_one_connection(index):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(50):
                assert index.search("lava")[0].id == "volcano"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
