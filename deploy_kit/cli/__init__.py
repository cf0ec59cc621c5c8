"""`deploy-kit` command line: one module per subcommand, each with add_arguments() and run() -> int.

Exit codes: 0 success; 1 an internal error (a bug: traceback shown); 2 bad input or a failed stage
(one line naming the file and the fix); 3 TensorRT missing where an engine was asked for;
for `infer`, the number of images that failed (capped at 125).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..version import __version__
from ..errors import DeployKitError
from . import benchmark, convert, doctor, eval, infer

COMMANDS = {"convert": convert, "infer": infer, "eval": eval, "doctor": doctor, "benchmark": benchmark}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploy-kit", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deploy-kit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs (TensorRT's included)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0], description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except DeployKitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
