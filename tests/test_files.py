"""probdl.files: atomic writes that honour the umask, and the writable-folder probe."""

from __future__ import annotations

import os
import shutil
import stat
from collections import namedtuple

import pytest

from probdl.errors import CheckpointError, DataError
from probdl.files import atomic_write, check_writable
from tests.limits import file_size_limit


def test_atomic_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target, "w") as fh:
        fh.write("first")
    with atomic_write(target, "w") as fh:
        fh.write("second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"half of the new con")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_probe_creates_the_folder_and_leaves_nothing_behind(tmp_path):
    where = check_writable(tmp_path / "a" / "b", needed_bytes=3 << 20)
    assert where.is_dir() and list(where.iterdir()) == []


def test_probe_refuses_a_folder_that_cannot_exist(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"cannot be created.*pick another"):
        check_writable(tmp_path / "file" / "out")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        check_writable(tmp_path / "file", error=CheckpointError)


def test_probe_refuses_a_disk_without_room(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(CheckpointError, match=r"1\.0 MiB free but this run writes about 8\.0"):
        check_writable(tmp_path, needed_bytes=8 << 20, what="checkpoint folder",
                       error=CheckpointError)


def test_probe_catches_a_write_that_fails_though_free_space_looks_fine(tmp_path):
    with file_size_limit(4096), pytest.raises(DataError, match=r"cannot write.*too large"):
        check_writable(tmp_path, needed_bytes=1 << 20)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, mask):
    """mkstemp makes 0600 files; an atomic write must end as open() would have made it."""
    old = os.umask(mask)
    try:
        with atomic_write(tmp_path / "out.csv", "w") as fh:
            fh.write("a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o666 & ~mask
