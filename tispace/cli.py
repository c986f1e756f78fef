"""`tispace`: run the local stack, inspect it, manage tenants."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tispace import localcluster, procs, stack

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where pids, logs, PKI and data live.")]
DEFAULT_STATE = Path(".tispace")


def _progress(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")


@app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE,
    nodes: Annotated[
        int | None, typer.Option(help="Number of fake super nodes (KWOK); default 4, then as last time.")
    ] = None,
    super_kubeconfig: Annotated[
        Path | None, typer.Option(help="Use this existing super cluster instead of starting one.")
    ] = None,
) -> None:
    """Start the local super cluster and TiSpace (reuses what already runs)."""
    t0 = time.monotonic()
    try:
        s = stack.Stack(
            state_dir,
            super_kubeconfig=super_kubeconfig,
            nodes=localcluster.NodeSpec(count=nodes) if nodes else None,
        )
        s.up(progress=_progress)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything started by this run was stopped[/yellow]")
        raise typer.Exit(130) from None
    except (procs.StartError, stack.StackError) as e:
        console.print(f"[red]tispace up failed:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(f"[green]ready in {time.monotonic() - t0:.1f}s[/green]")
    for line in s.summary():
        console.print(line)


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Stop everything `up` started in this state dir."""
    stack.Stack(state_dir).down()
    console.print("stopped")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Each component: pid, port, health and memory."""
    rows = stack.Stack(state_dir).status()
    if not rows:
        console.print(f"nothing runs from {state_dir} (start it with `tispace up`)")
        raise typer.Exit(1)
    table = Table("component", "pid", "port", "alive", "healthy", "RSS MiB")
    for r in rows:
        table.add_row(
            r["name"],
            str(r["pid"]),
            str(r["port"]),
            _yes(r["alive"]),
            _yes(r["healthy"]),
            f"{r['rss'] / 2**20:.0f}",
        )
    console.print(table)
    console.print(f"total RSS {sum(r['rss'] for r in rows) / 2**20:.0f} MiB")
    if not all(r["alive"] and r["healthy"] for r in rows):
        raise typer.Exit(1)


def _yes(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"
