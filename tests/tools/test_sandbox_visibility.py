"""What model-written code can see: the interpreter's own files, the declared packages and its working
directory, nothing else. Each secret is tried twice where the host allows: with the audit hook (the
Python layer) and with ``audit_hook=False`` (the private root alone, skipped where the kernel refused it).
Before the private root, every one of these reads succeeded: the sandbox saw the whole filesystem read-only."""

import json
import os
import sys
from pathlib import Path

import pytest

import rlvr
from rlvr.models import cache_dir
from rlvr.tools.python_sandbox import PythonSandbox, SandboxLimits, visible_paths

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's isolation is Linux-only")

LIMITS = SandboxLimits(timeout_s=10.0)


@pytest.fixture(params=["hook", "kernel"])
def sandbox(request):
    box = PythonSandbox(LIMITS, audit_hook=request.param == "hook")
    if request.param == "kernel":
        box.start()
        if not box.isolation.get("private_root"):
            box.close()
            pytest.skip(f"this host did not grant a private root: {box.isolation['notes']}")
    yield box
    box.close()


@pytest.fixture
def secrets(tmp_path):
    """A task's data file with gold answers and a run directory, as a training run has them."""
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps({"question": "What is 6 x 7?", "answer": "#### 42"}) + "\n")
    run_dir = tmp_path / "runs" / "grpo-1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("task: {name: jsonl}\n")
    return {"data": data, "run": run_dir / "config.yaml"}


def unreadable(sandbox: PythonSandbox, path) -> bool:
    result = sandbox.run(f"print(open({str(path)!r}).read()[:40])")
    return not result.ok and result.error == "exception" and ("42" not in result.output)


def test_the_training_data_and_the_run_directory_cannot_be_read(sandbox, secrets):
    assert unreadable(sandbox, secrets["data"])
    assert unreadable(sandbox, secrets["run"])
    listing = sandbox.run(f"import os; print(os.path.exists({str(secrets['data'].parent)!r}))")
    if not sandbox._audit_hook:  # the kernel layer alone: the folder does not exist in the sandbox's root
        assert listing.output == "False\n"


def test_the_home_directory_the_project_and_the_user_cache_cannot_be_read(sandbox):
    home = Path.home()
    project_file = Path(rlvr.__file__)
    assert unreadable(sandbox, project_file)
    assert unreadable(sandbox, Path(__file__))  # the repository's tests
    result = sandbox.run(f"import os; print(sorted(os.listdir({str(home)!r})))")
    outside = sorted(
        p
        for p in os.listdir(home)
        if not any(v.startswith(str(home / p)) for v in visible_paths(LIMITS.packages).visible)
    )
    for name in outside:
        assert f"'{name}'" not in result.output, f"{home / name} is visible from the sandbox"
    if cache_dir().exists():
        assert unreadable(sandbox, next((p for p in cache_dir().rglob("*") if p.is_file()), cache_dir()))


def test_other_processes_are_not_visible(sandbox):
    result = sandbox.run("print(open('/proc/1/environ').read()[:20])")
    assert not result.ok


def test_the_declared_packages_import_and_the_rest_do_not(sandbox):
    result = sandbox.run("import numpy, sympy, math, json\nprint(numpy.arange(4).sum(), sympy.Integer(6) * 7)")
    assert (result.ok, result.output) == (True, "6 42\n"), result.output
    for undeclared in ("torch", "transformers", "rlvr"):
        result = sandbox.run(f"import {undeclared}")
        assert not result.ok and "ModuleNotFoundError" in result.output, (undeclared, result.output)


def test_the_working_directory_stays_writable(sandbox):
    result = sandbox.run("open('notes.txt', 'w').write('ok'); print(open('notes.txt').read())")
    assert (result.ok, result.output) == (True, "ok\n")


def test_a_task_can_declare_fewer_packages():
    with PythonSandbox(SandboxLimits(timeout_s=10.0, packages=())) as box:
        assert "ModuleNotFoundError" in box.run("import numpy").output
        assert box.run("import fractions; print(fractions.Fraction(1, 3))").output == "1/3\n"


def test_a_dir_fd_relative_to_a_moved_cwd_does_not_reach_the_project(sandbox):
    """Resolving against the cwd while the kernel resolves against a dir_fd: the cwd cannot move."""
    target = Path(rlvr.__file__).resolve()
    ups = "../" * (len(Path(sandbox_workdir(sandbox)).parts) - 1)
    code = (
        "import os\nos.makedirs('a/b/c', exist_ok=True)\nfd = os.open('.', os.O_RDONLY)\n"
        "try:\n    os.chdir('a/b/c')\nexcept PermissionError as e:\n    print('chdir refused')\n"
        f"print(os.read(os.open({ups + str(target).lstrip('/')!r}, os.O_RDONLY, dir_fd=fd), 40))"
    )
    result = sandbox.run(code)
    assert not result.ok and "b'" not in result.output  # os.read never returned the file's bytes


def sandbox_workdir(box: PythonSandbox) -> str:
    box.start()
    return box._worker.workdir
