"""Check this machine (and a model's engine) for everything deploy-kit needs; say how to fix what is not.

  deploy-kit doctor [--model build/] [--json]

Exit code: 0 everything needed runs (on a machine without a GPU, GPU-only parts are `info`), 1 warnings
only (something that can run here is degraded), 2 a blocking error.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..doctor import Check, exit_code, read_machine, run_checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="a convert output folder whose engine to check")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def _engine_meta(folder: Path) -> tuple[dict[str, Any] | None, bool]:
    artifact = Artifact.open(folder)
    engines = artifact.engines()
    if not engines:
        return None, False
    meta = engines[0].meta
    return meta, (folder / meta.get("onnx_file", "")).is_file()


def run(args: argparse.Namespace) -> int:
    from ..video.capabilities import video_checks

    meta, onnx_present = _engine_meta(args.model) if args.model else (None, False)
    readings = read_machine()
    checks = run_checks(readings, meta, onnx_present,
                        f"deploy-kit convert MODEL -o {args.model} --force" if args.model else "")
    checks += video_checks(bool(readings.gpus))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped or redirected: one line per check, never cut
            console = Console(width=400)
        print_table(checks, console)
    return exit_code(checks)


def print_table(checks: list[Check], console: Any) -> None:
    """The checks as a table; long values (paths) fold onto more lines in a narrow terminal, never cut."""
    from rich.markup import escape
    from rich.table import Table

    table = Table("check", "status")
    for column in ("value", "fix"):
        table.add_column(column, overflow="fold")
    colour = {"ok": "green", "info": "blue", "warning": "yellow", "error": "red"}
    for c in checks:  # values are text, not markup: `pip install 'deploy-kit[cuda]'` keeps its extra
        table.add_row(escape(c.name), f"[{colour[c.status]}]{c.status}[/]", escape(c.value), escape(c.fix))
    console.print(table)
