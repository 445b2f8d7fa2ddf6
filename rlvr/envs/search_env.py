"""Search tool: the model writes ``<search>query</search>``, BM25 over the example's local corpus
answers in ``<result>...</result>``, and the model continues (the Search-R1 format).

The corpus is the JSONL file named by the example's ``meta["corpus"]`` (the multihop task sets
it); each corpus's SQLite index is opened once per process and shared by all episodes.
"""

import re
import threading

from rlvr.envs import ENVS, StepResult
from rlvr.errors import DataError
from rlvr.tasks.multihop import SEARCH_CALL_HELP
from rlvr.tools.search import SearchIndex, format_hits
from rlvr.types import Example, Messages

QUERY = re.compile(r"<search>(.*?)</search>\s*$", re.DOTALL)
HELP = f"{SEARCH_CALL_HELP} Give the final answer as \\boxed{{name}}."  # one wording of the call syntax
_indexes: dict[str, SearchIndex] = {}
_lock = threading.Lock()


def index_for(corpus: str) -> SearchIndex:
    with _lock:
        if corpus not in _indexes:
            _indexes[corpus] = SearchIndex(corpus)
        return _indexes[corpus]


class SearchEnv:
    stop = ["</search>"]

    def __init__(self, top_k: int, max_chars: int) -> None:
        self.top_k, self.max_chars = top_k, max_chars
        self.index: SearchIndex | None = None

    def reset(self, example: Example) -> Messages:
        corpus = example.meta.get("corpus")
        if not corpus:
            raise DataError(f"tools.env=search: example {example.id!r} has no meta['corpus'] (a JSONL corpus path)")
        self.index = index_for(str(corpus))
        if any("<search>" in m["content"] for m in example.prompt):
            return example.prompt
        *rest, last = example.prompt
        return [*rest, {**last, "content": f"{last['content']}\n\n{HELP}"}]

    def step(self, text: str) -> StepResult:
        match = QUERY.search(text)
        if match is None:
            return StepResult("\n<result>\nNo query: write <search>your query</search>.\n</result>\n", False,
                              tool="search", error="malformed")  # fmt: skip
        hits = self.index.search(match.group(1), k=self.top_k)
        return StepResult(
            f"\n<result>\n{format_hits(hits, max_chars=self.max_chars)}\n</result>\n", False, tool="search"
        )

    def close(self) -> None:
        self.index = None  # shared across episodes: left open


@ENVS.register("search")
def search_env(tools) -> SearchEnv:
    return SearchEnv(top_k=tools.top_k, max_chars=tools.max_output_chars)
