"""probdl.cli.main: help, exit codes and one-line errors for every command."""

from __future__ import annotations

import pytest

from probdl.cli import build_parser, main

COMMANDS = [["demo"], ["train"], ["evaluate"], ["predict"], ["bn"], ["bn", "query"],
            ["bn", "fit"], ["bn", "impute"]]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from probdl import __version__

    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: probdl" in out
    if command not in (["bn"],):
        assert "example:" in out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_example_in_every_help_parses(command, capsys):
    import shlex

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    example = capsys.readouterr().out.split("example:\n", 1)[-1].strip()
    words = shlex.split(example)
    assert words[0] == "probdl"
    args = build_parser().parse_args(words[1:])  # exits 2 on an option that does not exist
    assert [args.command, getattr(args, "bn_command", None)][:len(command)] == command


def test_usage_errors_exit_2(capsys):
    usage_errors = (["nope"], ["train"], ["bn", "query", "asia"], ["train", "--epochs", "x"])
    for argv in usage_errors:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert main([]) == 2
    assert main(["bn"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bn", "query", "asia", "--target", "lung", "--evidence", "smoke=maybe"], "maybe"),
        (["bn", "query", "asia", "--target", "lung", "--evidence", "smoke"], "VARIABLE=STATE"),
        (["bn", "query", "no-such-net", "--target", "lung"], "no-such-net"),
        (["bn", "query", "missing.bif", "--target", "lung"], "missing.bif"),
        (["train", "--data", "mnist", "--out", "x"], "--data"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("probdl: error:") and message in err
    assert "Traceback" not in err


def test_parser_lists_every_design_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"demo", "train", "evaluate", "predict", "bn"} <= set(sub.choices)


@pytest.mark.parametrize("where", ["first", "after the command", "last"])
def test_debug_is_accepted_anywhere_on_the_line(where):
    from probdl.errors import InferenceError

    argv = ["bn", "query", "asia", "--target", "lung", "--evidence", "smoke=maybe"]
    position = {"first": 0, "after the command": 2, "last": len(argv)}[where]
    argv.insert(position, "--debug")
    with pytest.raises(InferenceError, match="maybe"):  # the traceback, not exit code 1
        main(argv)


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "-1"],
    ["train", "--epochs", "1", "--batch-size", "0"],
    ["train", "--epochs", "1", "--lr", "nan"],
    ["train", "--epochs", "1", "--nproc", "0"],
    ["evaluate", "--model", "{tmp}/m.pt", "--num-samples", "0"],
    ["predict", "--model", "m.pt", "--images", "x.npy", "--abstain", "2"],
    ["bn", "fit", "asia", "d.csv", "--max-iter", "0"],
    ["bn", "fit", "asia", "d.csv", "--prior", "-1"],
], ids=lambda argv: " ".join(argv[:4]))
def test_an_invalid_value_is_a_usage_error_that_creates_nothing(argv, tmp_path, capsys):
    out = tmp_path / "new" / ("run" if argv[0] in ("train", "evaluate") else "x.bif")
    argv = [a.replace("{tmp}", str(tmp_path / "new")) for a in argv]
    if argv[0] != "evaluate":
        argv += ["--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_command_that_fails_after_preparing_its_folders_leaves_none(tmp_path, capsys):
    run = tmp_path / "runs" / "digits"
    assert main(["train", "--device", "tpu", "--epochs", "1", "--out", str(run)]) == 1
    assert "tpu" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    out = tmp_path / "missing" / "dir" / "p.csv"
    assert main(["predict", "--model", str(tmp_path / "none.pt"), "--images", "x.npy",
                 "--out", str(out)]) == 1
    assert not (tmp_path / "missing").exists()
    (tmp_path / "keep").mkdir()  # a folder that existed before is never removed
    assert main(["bn", "impute", "asia", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "keep" / "c.csv")]) == 1
    assert (tmp_path / "keep").is_dir()


def test_created_folders_are_named_on_stderr(tmp_path, capsys):
    png = tmp_path / "a" / "b" / "net.png"
    assert main(["bn", "query", "asia", "--target", "lung", "--plot", str(png)]) == 0
    assert png.is_file()
    captured = capsys.readouterr()
    assert f"probdl: created folder {tmp_path / 'a'}" in captured.err
    assert "probdl: created" not in captured.out


def test_an_output_file_that_is_a_folder_is_refused_before_work(tmp_path, capsys):
    assert main(["bn", "query", "asia", "--target", "lung", "--plot", str(tmp_path)]) == 1
    assert "is a folder; give a file name" in capsys.readouterr().err
