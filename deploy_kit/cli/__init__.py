"""The `deploy-kit` command line: one module per subcommand, each with `add_arguments(parser)` and
`run(args) -> int`; exit codes are the `EXIT_*` constants of `deploy_kit.errors`."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Collection, Sequence

from ..errors import EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, DeployKitError
from ..version import __version__

# Subcommand -> its module, imported only when it runs (or its help is asked for): `deploy-kit --help`
# and each command start without importing the others' dependencies.
COMMANDS = {"convert": "convert", "infer": "infer", "eval": "eval", "doctor": "doctor", "benchmark": "benchmark",
            "serve": "serve", "export-triton": "export_triton"}
DESCRIPTION = """Take a PaddleSeg segmentation model to a fast, correct TensorRT deployment.

  deploy-kit convert [MODEL] -o build/          PaddleSeg export -> ONNX -> TensorRT engine + metadata
  deploy-kit infer IMAGES... --model build/     label PNGs (and overlays) for images, folders or globs
  deploy-kit eval IMAGES LABELS --model build/  mIoU and pixel accuracy
  deploy-kit doctor [--model build/]            what runs on this machine, and how to fix what does not
  deploy-kit benchmark --model build/           where the time goes, engine-only against end-to-end
  deploy-kit serve --model build/               Triton Inference Server (PyTriton): HTTP, gRPC, metrics
  deploy-kit export-triton -o model_repository/ a Triton model repository for the NGC container

Without MODEL / --model the shipped demo model (PP-LiteSeg-T, synthetic street scenes) is used."""
EPILOG = ("exit codes: 0 done; 1 some inputs failed (each has its error line); 2 bad option or model; "
          "3 no TensorRT (convert); 70 internal error; 130 interrupted")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or nothing or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _verbose_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="show debug logs, TensorRT's included")


def build_parser(full: Collection[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The command line, with the options of the subcommands in `full` (the others are listed by name)."""
    parser = argparse.ArgumentParser(prog="deploy-kit", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"deploy-kit {__version__}")
    _verbose_option(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if name not in full:
            sub.add_parser(name, help=_summary(module_name), add_help=False)
            continue
        module = importlib.import_module(f"{__name__}.{module_name}")
        command = sub.add_parser(name, help=_summary(module_name), description=module.__doc__,
                                 formatter_class=HelpFormatter)
        module.add_arguments(command)
        _verbose_option(command, argparse.SUPPRESS)  # -v after the subcommand too, without resetting one before
        command.set_defaults(run=module.run)
    return parser


def _summary(module_name: str) -> str:
    """The first line of a subcommand module's docstring, read from its source without importing it."""
    spec = importlib.util.find_spec(f"{__name__}.{module_name}")
    assert spec is not None and spec.origin is not None
    return (ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or "").splitlines()[0]


def _command_in(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.run(args))
        sys.stdout.flush()
        return code
    except DeployKitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`deploy-kit doctor --json | head`): stop quietly, and keep Python's exit-time
        # flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception:  # a bug: keep the traceback, and an exit code no user error uses
        traceback.print_exc()
        print(f"deploy-kit {__version__} hit an internal error (above); please report it", file=sys.stderr)
        return EXIT_BUG
