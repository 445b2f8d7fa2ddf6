"""What a sandboxed interpreter may see: the standard library, the declared packages and what they
require, and the system's shared libraries (:func:`visible_paths`). The worker binds exactly these,
read-only, into a private root (``rlvr.tools._sandbox_worker._enter_new_root``), and its audit hook
refuses reads elsewhere. Computed in the parent, once per package list.
"""

import functools
import os
from typing import NamedTuple

# What the interpreter needs from the system besides Python's own folders: shared libraries that
# extension modules load, the loader's cache, and the harmless device files.
SYSTEM_PATHS = (
    "/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/etc/ld.so.cache",
    "/usr/share/zoneinfo", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
)  # fmt: skip


class View(NamedTuple):
    """What a sandbox sees: ``visible`` paths (bound read-only into its private root), ``hidden`` folders
    inside them (covered by an empty folder), the declared ``packages``' paths, and its ``sys_path``."""

    visible: list[str]
    hidden: list[str]
    packages: list[str]
    sys_path: list[str]


@functools.lru_cache(maxsize=16)
def visible_paths(packages: tuple[str, ...]) -> View:
    """The standard library (without the base interpreter's own site-packages), the files of the
    declared ``packages`` and of what they require (their distributions' top-level folders, e.g.
    ``numpy/`` and ``numpy.libs/``), and :data:`SYSTEM_PATHS`: nothing of the project, the data, the
    run directory, the home directory or the user's cache, unless one of them is inside these."""
    import sysconfig

    paths = sysconfig.get_paths()
    stdlib = [os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")]
    stdlib = [p for p in dict.fromkeys(stdlib) if os.path.isfile(os.path.join(p, "os.py"))]  # a venv's is not one
    hidden = [os.path.join(p, name) for p in stdlib for name in ("site-packages", "dist-packages")]
    found = _package_files(packages)
    sys_path = [
        *stdlib,
        *[os.path.join(p, "lib-dynload") for p in stdlib if os.path.isdir(os.path.join(p, "lib-dynload"))],
    ]
    for folder in dict.fromkeys(os.path.dirname(f) for f in found):
        if folder not in sys_path:
            sys_path.append(folder)
    system = [p for p in SYSTEM_PATHS if os.path.lexists(p)]
    visible = list(dict.fromkeys([*system, *stdlib, *found]))
    visible = [
        p for p in visible if not any(p != q and p.startswith(q + "/") and not os.path.islink(q) for q in visible)
    ]
    return View(visible, [h for h in hidden if os.path.isdir(h)], found, sys_path)


def _package_files(packages: tuple[str, ...]) -> list[str]:
    """Top-level files and folders of the distributions providing ``packages`` and of their requirements."""
    import re
    from importlib import metadata

    by_module = metadata.packages_distributions()
    pending = [d for name in packages for d in by_module.get(name, [name])]
    seen: set[str] = set()
    found: list[str] = []
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed: importing it fails in the sandbox as it would outside
        site = os.path.realpath(str(dist.locate_file("")))
        for top in sorted({f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != ".."}):
            path = os.path.realpath(os.path.join(site, top))
            skip = top == "__pycache__" or top.endswith((".dist-info", ".pth"))
            if path.startswith(site + os.sep) and os.path.exists(path) and not skip:
                found.append(path)
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return list(dict.fromkeys(found))
