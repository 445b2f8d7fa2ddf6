import pytest

from rlvr.atomic import atomic_folder


def test_a_failed_write_keeps_the_previous_folder_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_folder(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, fsync=True) as tmp:
            (tmp / "weights").write_text("half of v2")
            raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_a_completed_write_replaces_the_folder(tmp_path):
    target = tmp_path / "ckpt"
    for version in ("v1", "v2"):
        with atomic_folder(target, fsync=True) as tmp:
            (tmp / "weights").write_text(version)
    assert (target / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_a_cache_filled_by_another_process_meanwhile_is_kept(tmp_path):
    """Two first runs converting the embedded model at once: the second to finish keeps the first's
    folder (a reader may be loading it) and drops its own copy, where replacing would delete it."""
    target = tmp_path / "model"
    with atomic_folder(target, keep_existing=True) as tmp:
        (tmp / "weights").write_text("mine")
        target.mkdir()
        (target / "weights").write_text("theirs")  # the other process renamed its copy in meanwhile
    assert (target / "weights").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left
    with atomic_folder(tmp_path / "fresh", keep_existing=True) as tmp:
        (tmp / "weights").write_text("mine")
    assert (tmp_path / "fresh" / "weights").read_text() == "mine"
