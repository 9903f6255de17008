"""probdl.cli.output: JSON mode keeps stdout for the document; output folders come and go."""

from __future__ import annotations

import json

import pytest

from probdl.cli.output import OutputPaths, emit_json, json_mode
from probdl.errors import DataError


def test_json_mode_sends_prints_to_stderr_and_the_document_to_stdout(capsys):
    with json_mode(True):
        print("progress")
        emit_json({"a": 1})
        print("plot -> x.png")
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"a": 1}
    assert captured.err.split() == ["progress", "plot", "->", "x.png"]
    with json_mode(False):
        print("text")
    assert capsys.readouterr().out == "text\n"


def test_output_paths_removes_only_the_empty_folders_it_created(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), OutputPaths(
            files=[tmp_path / "old" / "new" / "x.csv", tmp_path / "a" / "b" / "y.csv"],
            folders=[tmp_path / "run"]):
        assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "run").is_dir()
        (tmp_path / "run" / "written.txt").write_text("kept")
        raise RuntimeError("the command failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old", "run"]
    assert not list((tmp_path / "old").iterdir())
    assert (tmp_path / "run" / "written.txt").read_text() == "kept"
    assert "created" not in capsys.readouterr().err
    with OutputPaths(files=[tmp_path / "c" / "d" / "z.png", None]):
        pass
    assert capsys.readouterr().err == f"probdl: created folder {tmp_path / 'c'}\n"


def test_output_paths_refuses_a_file_that_is_a_folder_and_a_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a folder; give a file name"), OutputPaths(
            files=[tmp_path]):
        pass
    with pytest.raises(DataError, match="is a file, not a folder"), OutputPaths(
            files=[tmp_path / "new" / "x.csv"], folders=[tmp_path / "f"]):
        pass
    assert not (tmp_path / "new").exists()  # prepared before the failure, removed again


def test_output_paths_refuses_two_outputs_of_one_file_before_creating_anything(tmp_path):
    from probdl.errors import UsageError

    target = tmp_path / "new" / "x.csv"
    with pytest.raises(UsageError, match="--out and --plot name the same file"), OutputPaths(
            files={"--out": target, "--plot": tmp_path / "new" / ".." / "new" / "x.csv"}):
        pass
    assert not (tmp_path / "new").exists()
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "b.csv").hardlink_to(tmp_path / "a.csv")
    with pytest.raises(UsageError, match="same file"), OutputPaths(
            files=[tmp_path / "a.csv", tmp_path / "b.csv"]):
        pass
    with OutputPaths(files={"--out": tmp_path / "a.csv", "--posteriors": None}):
        pass
