"""Options and output the `tispace` commands share."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Piped output (CI logs, scripts) is not wrapped at 80 columns: commands must stay copyable.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where pids, logs, PKI and data live.")]
DEFAULT_STATE = Path(".tispace")
