"""The ``probdl`` command line: the one parser, and dispatch to the command modules.

    probdl demo
    probdl train --data digits --epochs 30 --out runs/digits
    probdl bn query asia --target lung --evidence smoke=yes

Exit codes: 0 success, 2 usage error, 1 a :class:`~probdl.errors.ProbdlError` (its message is
printed without a traceback; ``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from probdl import __version__
from probdl.cli.output import OutputPaths, json_mode
from probdl.errors import ProbdlError, UsageError

DATA_HELP = "digits | shapes | idx:IMAGES,LABELS | cifar:DIR | folder:DIR"
DEBUG_HELP = "show tracebacks of errors (accepted anywhere on the line)"

# --debug on every subcommand too; SUPPRESS keeps a subcommand that did not see it from
# resetting the value the top level parsed (`probdl --debug bn query ...`)
_COMMON = argparse.ArgumentParser(add_help=False)
_COMMON.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)


def _command(sub: argparse._SubParsersAction, name: str, summary: str, example: str):
    return sub.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="example:\n" + textwrap.indent(example, "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_COMMON],
    )


# Value checks at parse time: a bad value is a usage error (exit 2) before any work starts
# and before any output folder exists.
def _whole(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def _jobs(text: str) -> int:
    value = _whole(-(2**31))(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, or -1 for every core, got {value}")
    return value


def _number(low: float, high: float = math.inf, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and (value > low if low_open else value >= low)
                and value <= high):
            bound = f"more than {low}" if low_open else f"at least {low}"
            within = "" if high == math.inf else f" and at most {high}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}{within}, "
                                             f"got {text}")
        return value

    parse.__name__ = "number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probdl",
        description="Bayesian networks and Bayesian CNNs: inference, learning, uncertainty.",
        epilog="Run `probdl COMMAND --help` for each command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"probdl {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(sub, "demo", "run the main job end to end on bundled data", "probdl demo")
    p.add_argument("--out", default="demo_out", help="folder for the plots (default demo_out)")
    p.add_argument("--parts", nargs="+", help="only these parts: data graph em bnn hybrid")

    p = _command(
        sub,
        "train",
        "train a Bayesian CNN (or a baseline) on an image dataset",
        "probdl train --data digits --epochs 30 --out runs/digits",
    )
    p.add_argument("--data", default="digits", help=DATA_HELP)
    p.add_argument("--out", required=True, help="run folder: model.pt, checkpoints, plots")
    p.add_argument(
        "--model", default="bayesian", choices=["bayesian", "deterministic", "mc-dropout"]
    )
    p.add_argument("--epochs", type=_whole(1), default=30)
    p.add_argument("--predict-dropout", type=_number(0, 1), default=None, metavar="P",
                   help="bayesian only: dropout rate kept on when predicting, up to the "
                        "training rate 0.5 (default 0; see docs/bnn.md)")
    p.add_argument("--components", type=_whole(1), default=None, metavar="K",
                   help="bayesian only: a mixture of K mean-field posteriors, fitted in the "
                        "time of one (default 1; see docs/bnn.md)")
    p.add_argument("--batch-size", type=_whole(1), default=64)
    p.add_argument("--lr", type=_number(0, low_open=True), default=3e-3,
                   help="Adam's learning rate (default 3e-3)")
    p.add_argument(
        "--augment", default="light", choices=["light", "none"],
        help="light: rotations up to 5 degrees and zooms of 0.92-1.08 (default); none: off",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--nproc", type=_whole(1), default=1, help="processes under torchrun")
    p.add_argument("--json", action="store_true", help="print results as JSON")

    p = _command(
        sub,
        "evaluate",
        "evaluate a saved model on a dataset's test split",
        "probdl evaluate --model runs/digits/model.pt --data digits --ood noise",
    )
    p.add_argument("--model", required=True, help="a model saved by `probdl train`")
    p.add_argument("--data", default="digits", help=DATA_HELP)
    p.add_argument("--ood", choices=["noise", "rotate"], help="an out-of-distribution set")
    p.add_argument("--num-samples", type=_whole(1), default=32)
    p.add_argument("--seed", type=int, help="split seed (default: the one the model was trained "
                   "with)")  # fmt: skip
    p.add_argument("--other-data", action="store_true",
                   help="score data other than the model's training data (its test split)")
    p.add_argument("--out", help="folder for the evaluate_*.png plots (default: beside the "
                   "model)")
    p.add_argument("--json", action="store_true")

    p = _command(
        sub,
        "predict",
        "predict with uncertainty on new images and check for drift",
        "probdl predict --model runs/digits/model.pt --images new/ --out predictions.csv",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="an image file, a folder, or .npy (N,C,H,W)")
    p.add_argument("--out", required=True, help="CSV of labels, probabilities and uncertainty")
    p.add_argument("--num-samples", type=_whole(1), default=32)
    p.add_argument("--abstain", type=_number(0, 1), default=0.5,
                   help="abstain below this confidence")
    p.add_argument("--resize", action="store_true",
                   help="resize and convert images to the model's size and channels")
    p.add_argument("--json", action="store_true")

    bn = _command(
        sub, "bn", "Bayesian networks: query, fit, impute", "probdl bn query asia --target lung"
    )
    bn_sub = bn.add_subparsers(dest="bn_command", metavar="BN_COMMAND")
    q = _command(
        bn_sub,
        "query",
        "posterior of target variables given evidence",
        "probdl bn query asia --target lung --evidence smoke=yes,xray=yes --plot asia.png",
    )
    q.add_argument("net", help="a .bif/.xmlbif/.uai file or a bundled network's name")
    q.add_argument("--target", required=True, action="append", help="repeat or comma-separate")
    q.add_argument("--evidence", default="", help="A=a,B=b")
    q.add_argument("--plot", help="draw the network with posterior bars to this file; its "
                   "suffix picks the format: .png, .pdf or .svg")
    q.add_argument("--json", action="store_true")
    f = _command(
        bn_sub,
        "fit",
        "learn CPTs from a CSV with missing cells (EM), latent variables allowed",
        "probdl bn fit asia data.csv --latent either:2 --out fitted.bif",
    )
    f.add_argument("net")
    f.add_argument("data", help="CSV, one column per observed variable; empty cell = missing")
    f.add_argument("--latent", action="append", default=[],
                   help="NAME:K for a variable with no column, K its number of states in the "
                   "network; repeatable")
    f.add_argument("--out", required=True, help="where to write the fitted network (.bif ...)")
    f.add_argument("--max-iter", type=_whole(1), default=100)
    f.add_argument("--prior", type=_number(0), default=1.0)
    f.add_argument("--init", metavar="NET",
                   help="start EM from this network's CPTs (same structure and states), so "
                   "hidden variables keep the meaning of their state names")
    f.add_argument("--restarts", type=_whole(1), default=1,
                   help="EM runs from this many random starts; the best objective is kept")
    f.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    f.add_argument("--nproc", type=_whole(1), default=1, help="processes under torchrun")
    f.add_argument("--n-jobs", type=_jobs, default=1,
                   help="threads for EM's E-step, each on a block of the rows; -1: every core")
    f.add_argument("--json", action="store_true")
    m = _command(
        bn_sub,
        "impute",
        "fill missing cells with their most probable states, with posteriors",
        "probdl bn impute asia data.csv --out completed.csv --posteriors posteriors.csv",
    )
    m.add_argument("net")
    m.add_argument("data")
    m.add_argument("--out", required=True, help="the completed CSV (most probable states)")
    m.add_argument("--posteriors", help="a CSV of row,variable,state,probability: every state's "
                   "posterior for every imputed cell")
    m.add_argument("--json", action="store_true")
    return parser


def _outputs(args: argparse.Namespace) -> OutputPaths:
    """The files and folders a command writes, prepared before it starts (docs/cli.md)."""
    command = f"bn {args.bn_command}" if args.command == "bn" else args.command
    files = {"predict": ["out"], "bn fit": ["out"], "bn impute": ["out", "posteriors"]
             }.get(command, [])
    figures = {"bn query": ["plot"]}.get(command, [])
    folders = {"train": ["out"], "demo": ["out"], "evaluate": ["out"]}.get(command, [])
    paths = {f"--{name}": getattr(args, name, None) for name in folders}
    if command == "evaluate" and args.out is None:  # the plots go beside the model
        paths = {"the model's folder": Path(args.model).parent}
    network = {"NET": "net", "DATA": "data"}  # what a command reads: never overwritten
    inputs = {"predict": {"--model": "model", "--images": "images"},
              "evaluate": {"--model": "model"}, "bn fit": network, "bn impute": network,
              }.get(command, {})
    return OutputPaths(files={f"--{name}": getattr(args, name, None) for name in files},
                       figures={f"--{name}": getattr(args, name, None) for name in figures},
                       folders=paths,
                       inputs={label: getattr(args, name) for label, name in inputs.items()})


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # the command modules are imported on use: `probdl bn ...` never loads torch's CNN side
    if args.command == "demo":
        from probdl.cli.demo.runner import run_demo

        run_demo(args.out, args.parts)
        return 0
    if args.command in ("train", "evaluate", "predict"):
        from probdl.cli import bnn

        return getattr(bnn, args.command)(args)
    if args.command == "bn" and args.bn_command:
        from probdl.cli import graph

        return getattr(graph, args.bn_command)(args)
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what --nproc re-runs under torchrun
    # OpenMP's threads otherwise spin after each parallel region, taking the cores of the other
    # ranks under --nproc and of whoever shares the machine. Set here, before the command loads
    # torch (the OpenMP runtime reads it once, when it starts), and inherited by the ranks torchrun
    # starts for --nproc; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with json_mode(getattr(args, "json", False)), _outputs(args) as outputs:
            code = _dispatch(args, parser)
            if code != 0:  # e.g. torchrun's ranks failed: leave no empty folder behind
                outputs.undo()
            return code
    except ProbdlError as err:
        if args.debug:
            raise
        print(f"probdl: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
    except KeyboardInterrupt:
        print("probdl: interrupted", file=sys.stderr)
        return 130

