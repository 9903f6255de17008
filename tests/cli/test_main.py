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
