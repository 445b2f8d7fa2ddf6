"""A local search tool: BM25 over a JSONL corpus with SQLite FTS5, embedded, no server.

A model that may write ``<search>query</search>`` during a multi-turn rollout needs a search
engine that is fast, deterministic and offline. Python's own :mod:`sqlite3` ships FTS5 (full-text
index with Okapi BM25 ranking) in every mainstream build, so no service, JVM or extra package is
involved::

    index = SearchIndex("corpus.jsonl")              # built once, cached under the user cache dir
    observation = format_hits(index.search("founder of Zentrix", k=3))

The corpus is one document per line, ``{"id": str, "title": str, "text": str}``. Ranking is
``bm25()`` with the title weighted :data:`TITLE_WEIGHT` times the text, because titles name the
document's subject (Wikipedia-style) and a query usually names an entity.

Queries are model-written free text, so they never reach FTS5's query language: the query is cut
into words (letters and digits), each word is quoted as a literal term, and the terms are OR-ed, so
BM25 ranks documents by how many and how rare the matched words are. Quotes, ``AND``/``OR``/``NEAR``,
``*``, ``:``, parentheses and hyphens are plain text; an empty or all-punctuation query returns no
hits rather than an error.

The index is a SQLite file keyed on a hash of the corpus content (and :data:`SCHEMA_VERSION`): an
unchanged corpus is opened as it is, a changed one is rebuilt into a temporary sibling file that then
replaces the old one with ``os.replace``, so a reader never sees half an index and concurrent
builders of the same corpus each publish a complete one. ``index_path=":memory:"`` skips the file.

Limits: no stemming or synonyms (``unicode61`` tokenizer, case- and diacritic-folded): ``founded``
does not match ``founder``; no phrase or prefix search for the model; the corpus is hashed (read
once) on every open, which is seconds only for corpora of gigabytes; a query keeps its first
:data:`MAX_QUERY_TERMS` distinct words.
"""

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr.errors import DataError, RlvrError

SCHEMA_VERSION = 1  # bump when the table layout or tokenizer changes: old index files are rebuilt
TITLE_WEIGHT = 2.0  # bm25 column weight of the title relative to the text (1.0)
MAX_QUERY_TERMS = 32
_WORD = re.compile(r"[^\W_]+")  # runs of letters/digits: what unicode61 keeps as tokens
_SCHEMA = (
    "CREATE VIRTUAL TABLE docs USING fts5(doc_id UNINDEXED, title, text, tokenize='unicode61 remove_diacritics 2')"
)


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document; ``score`` is BM25 relevance, higher is better (FTS5's value negated)."""

    id: str
    title: str
    text: str
    score: float


class SearchIndex:
    """A BM25 index over a JSONL corpus; :meth:`search` is safe on any query string.

    ``index_path``: where the SQLite index lives; None puts it under the rlvr cache dir (named by
    the corpus's resolved path), ``":memory:"`` keeps it in memory (rebuilt on every open).
    Raises :class:`DataError` for a missing file or a malformed row (naming file and line) and
    :class:`RlvrError` when this Python's SQLite lacks FTS5. One connection, guarded by a lock,
    serves every thread.
    """

    def __init__(self, corpus: str | Path, index_path: str | Path | None = None) -> None:
        require_fts5()
        self.corpus = Path(corpus).expanduser()
        key = corpus_key(self.corpus)
        if str(index_path) == ":memory:":
            self.index_path: Path | None = None
            self._conn = sqlite3.connect(":memory:", check_same_thread=False)
            try:
                _fill(self._conn, self.corpus, key)
            except BaseException:
                self._conn.close()
                raise
        else:
            self.index_path = Path(index_path).expanduser() if index_path else default_index_path(self.corpus)
            if stored_key(self.index_path) != key:
                _build_file(self.index_path, self.corpus, key)
            uri = f"{self.index_path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self.size: int = self._conn.execute("SELECT count(*) FROM docs").fetchone()[0]

    def search(self, query: str, k: int = 3) -> list[SearchHit]:
        """The ``k`` best documents for ``query`` by BM25 (fewer if fewer match; none for no words)."""
        match = fts_query(query)
        if not match or k < 1:
            return []
        sql = (
            f"SELECT doc_id, title, text, bm25(docs, 0.0, {TITLE_WEIGHT}, 1.0) AS s FROM docs "
            "WHERE docs MATCH ? ORDER BY s, rowid LIMIT ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (match, k)).fetchall()
        return [SearchHit(doc_id, title, text, -score) for doc_id, title, text, score in rows]

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_hits(hits: list[SearchHit], max_chars: int = 1200, max_hit_chars: int = 300) -> str:
    """The observation the model reads: ``[1] Title: text`` lines, each and all of them bounded.

    Whitespace in a document is collapsed so each hit is one line; a line over ``max_hit_chars``
    and the whole text over ``max_chars`` are cut with ``…``. No hits gives ``No results.``.
    """
    if not hits:
        return "No results."
    lines = []
    for n, hit in enumerate(hits, start=1):
        line = " ".join(f"[{n}] {hit.title}: {hit.text}".split())
        lines.append(_cut(line, max_hit_chars))
    return _cut("\n".join(lines), max_chars)


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression that ORs the query's words as quoted literals ('' if it has none).

    Words are runs of letters and digits, lowercased, deduplicated, at most :data:`MAX_QUERY_TERMS`.
    Quoting makes FTS5 operators in the text (``AND``, ``NEAR``, ``*``, ``col:``) plain words.
    """
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"' for w in words)


def require_fts5() -> None:
    """RlvrError unless this Python's SQLite has the FTS5 extension."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        raise RlvrError(
            f"the search tool needs SQLite's FTS5 extension, which this Python's sqlite3 (SQLite "
            f"{sqlite3.sqlite_version}) lacks; use a Python built with FTS5 (python.org, conda, most distros)"
        ) from None
    finally:
        conn.close()


def corpus_key(corpus: Path) -> str:
    """The index key of a corpus file: schema version and sha256 of its bytes (DataError if missing)."""
    if not corpus.is_file():
        raise DataError(f"search corpus not found: {corpus}")
    digest = hashlib.sha256()
    with corpus.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"v{SCHEMA_VERSION}:{digest.hexdigest()}"


def default_index_path(corpus: Path) -> Path:
    """``<rlvr cache>/search/<hash of the corpus's resolved path>.sqlite``."""
    from rlvr.models import cache_dir  # lazy: rlvr.models imports torch

    name = hashlib.sha256(str(corpus.resolve()).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "search" / f"{corpus.stem}-{name}.sqlite"


def stored_key(index_path: Path) -> str | None:
    """The corpus key an index file was built from; None if it is absent, foreign or unreadable."""
    if not index_path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{index_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'corpus'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _build_file(index_path: Path, corpus: Path, key: str) -> None:
    """Build the index into a temporary sibling, then rename it over ``index_path``."""
    index_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=index_path.parent, prefix=f".{index_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            _fill(conn, corpus, key)
        finally:
            conn.close()
        os.replace(tmp, index_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fill(conn: sqlite3.Connection, corpus: Path, key: str) -> None:
    conn.execute(_SCHEMA)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.executemany("INSERT INTO docs (doc_id, title, text) VALUES (?, ?, ?)", read_corpus(corpus))
    if conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 0:
        raise DataError(f"search corpus {corpus} has no documents")
    conn.execute("INSERT INTO docs (docs) VALUES ('optimize')")
    conn.execute("INSERT INTO meta VALUES ('corpus', ?), ('source', ?)", (key, str(corpus)))
    conn.commit()


def read_corpus(corpus: Path) -> Iterator[tuple[str, str, str]]:
    """Each document as ``(id, title, text)``; DataError naming ``file:line`` for a bad row."""
    seen: set[str] = set()
    with corpus.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                doc = _parse_doc(f"{corpus}:{n}", line)
                if doc[0] in seen:
                    raise DataError(f"{corpus}:{n}: duplicate document id {doc[0]!r}")
                seen.add(doc[0])
                yield doc


def _parse_doc(where: str, line: str) -> tuple[str, str, str]:
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with id, title, text; got {type(obj).__name__}")
    for field in ("id", "title", "text"):
        if not isinstance(obj.get(field), str):
            got = "missing" if field not in obj else f"{type(obj[field]).__name__} {obj[field]!r:.40}"
            raise DataError(f"{where}: field {field!r} must be a string ({got})")
    if not obj["id"]:
        raise DataError(f"{where}: field 'id' is empty")
    return obj["id"], obj["title"], obj["text"]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
