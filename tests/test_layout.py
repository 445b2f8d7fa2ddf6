"""The package split is the future process split: checked on the source, so a stray import fails here.

- the rollout side (engines, envs, tools, rewards, tasks) never imports the learner;
- CPU-only code (``rlvr.cpu``) is imported only lazily, where the device is known to be a CPU;
- transformers' internals are reached only through ``rlvr.hf_compat``;
- module-level imports form no cycle.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rlvr"
ROLLOUT_SIDE = ("rollout", "envs", "tools", "rewards", "tasks")
INTERNALS = ("_attn_implementation_internal", "AttentionInterface", "DynamicCache", "DynamicLayer", "past_key_values")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("rlvr")}


def test_the_rollout_side_never_imports_the_learner():
    for name, path in modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in ROLLOUT_SIDE:
            bad = sorted(i for i in imports(path, top_level_only=False) if i.startswith("rlvr.learner"))
            assert not bad, f"{name} imports {bad}"


def test_cpu_code_is_imported_only_lazily():
    for name, path in modules().items():
        if name.startswith("rlvr.cpu"):
            continue
        bad = sorted(i for i in imports(path, top_level_only=True) if i.startswith("rlvr.cpu"))
        assert not bad, f"{name} imports {bad} at module level"


def test_transformers_internals_only_in_hf_compat():
    for name, path in modules().items():
        if name == "rlvr.hf_compat":
            continue
        code = ast.unparse(ast.parse(path.read_text()))  # without comments and docstrings' layout
        tree = ast.parse(code)
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        used = sorted(set(INTERNALS) & names)
        if name == "rlvr.rollout.fast":  # subclasses the cache layer it gets from hf_compat
            used = [u for u in used if u not in ("DynamicCache", "DynamicLayer")]
        assert not used, f"{name} touches {used} outside rlvr.hf_compat"


def test_module_level_imports_have_no_cycle():
    table = modules()
    graph = {
        name: {i for i in imports(path, top_level_only=True) if i in table and i != name}
        for name, path in table.items()
    }
    # a package's __init__ importing its own submodules to register them is not a cycle of concern
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not e.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_ray_is_reached_only_through_rlvr_distributed_and_only_lazily():
    """``distributed.backend: none`` never imports Ray: only rlvr.distributed imports it at module level,
    and nothing outside rlvr.distributed imports rlvr.distributed at module level."""
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module)
        if not name.startswith("rlvr.distributed"):
            assert "ray" not in top, f"{name} imports ray at module level"
            bad = sorted(i for i in imports(path, top_level_only=True) if i.startswith("rlvr.distributed"))
            assert not bad, f"{name} imports {bad} at module level"
