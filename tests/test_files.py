"""Atomic writes: the target is the old file or the complete new one, and no temporary file is left behind."""

import numpy as np
import pytest

from mirage_core.files import atomic_folder, atomic_path, write_bytes, write_json, write_text


def test_writes_replace_the_target_and_leave_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    write_bytes(tmp_path / "a.png", b"\x89PNG")
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG"
    write_json(tmp_path / "t.json", {"µ": [1, 2]})
    assert (tmp_path / "t.json").read_text(encoding="utf-8") == '{\n  "µ": [\n    1,\n    2\n  ]\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "report.md", "t.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "pack.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["pack.json"]


def test_numpy_savez_lands_on_the_target_name(tmp_path):
    target = tmp_path / "cache.npz"
    with atomic_path(target) as temporary:
        np.savez(temporary, x=np.arange(3))  # savez appends .npz to a name without it
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_newline_is_kept_as_given(tmp_path):
    write_text(tmp_path / "a.csv", "a,b\r\n1,2\r\n", newline="")
    assert (tmp_path / "a.csv").read_bytes() == b"a,b\r\n1,2\r\n"


def test_a_folder_is_swapped_whole_or_not_at_all(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.npy").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "new.npy").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
    with atomic_folder(target) as staging:
        (staging / "new.npy").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.npy"]
    assert target.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
    with atomic_folder(tmp_path / "fresh" / "model") as staging:  # parents are created
        (staging / "config.json").write_text("{}")
    assert (tmp_path / "fresh" / "model" / "config.json").read_text() == "{}"
