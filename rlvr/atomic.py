"""Write a folder so that readers see all of it or none of it."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(target: Path, fsync: bool = False, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to fill; on success it replaces ``target`` by a rename.

    ``keep_existing`` is for caches that several processes may fill at once (two first runs converting
    the embedded model): a ``target`` that another process completed meanwhile is kept, and this
    one's copy dropped, so no reader ever sees the folder deleted under it.

    A crash or an exception at any point leaves the previous ``target`` (or none) and removes the
    temporary folder: never half a model or half a checkpoint. With ``fsync`` the files are
    flushed to disk before the rename. Limits: replacing an existing ``target`` is a delete then a
    rename, so a crash between the two leaves no ``target`` (the previous checkpoint still exists).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        yield tmp
        readable_as_umask_allows(tmp)
        if fsync:
            for path in tmp.iterdir():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
        if keep_existing:
            try:
                os.rename(tmp, target)  # fails on an existing non-empty folder: the other process's copy stays
            except OSError:
                if not target.exists():
                    raise
            return
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def readable_as_umask_allows(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes a plain ``mkdir``/``open`` would have had:
    ``mkdtemp`` makes the folder owner-only (0700), which would keep an exported model or a
    checkpoint from other users and containers."""
    umask = os.umask(0)
    os.umask(umask)
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)
