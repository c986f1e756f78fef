"""`tispace`: run the local stack, inspect it, manage tenants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tispace import aio, procs, tenants
from tispace import kubeconfig as kubeconfig_file
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispacectl import localcluster, programs, stack
from tispacectl.options import DEFAULT_STATE, StateDir, console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
    sample: Annotated[bool, typer.Option(help="Create the sample tenant 'dev'.")] = True,
) -> None:
    """Start the local super cluster and TiSpace (reuses what already runs)."""
    t0 = time.monotonic()
    try:
        s = stack.Stack(
            state_dir,
            super_kubeconfig=super_kubeconfig,
            nodes=localcluster.NodeSpec(count=nodes) if nodes else None,
        )
        s.up(progress=_progress, sample=sample)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything started by this run was stopped[/yellow]")
        raise typer.Exit(130) from None
    except (procs.StartError, stack.StackError, TimeoutError, RuntimeError) as e:
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
def install(
    super_kubeconfig: Annotated[Path, typer.Option(help="The super cluster to install TiSpace on.")],
    overlay: Annotated[
        str, typer.Option(help="config/overlays/<name>: kata-rook-ceph or plain.")
    ] = "kata-rook-ceph",
    timeout: Annotated[float, typer.Option(help="Seconds each workload may take to roll out.")] = 300,
    run_local: Annotated[
        bool,
        typer.Option(help="Also run the programs as local processes (a cluster whose pods are fake: KWOK)."),
    ] = False,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Install TiSpace on a real super cluster: CRDs, RBAC, the three programs (docs/install.md)."""
    from tispacectl import install as install_mod

    t0 = time.monotonic()
    try:
        objs = install_mod.install(super_kubeconfig.resolve(), overlay, _progress, timeout)
    except install_mod.InstallError as e:
        console.print(f"[red]install failed:[/red] {e}")
        raise typer.Exit(1) from e
    if run_local:
        try:
            stack.Stack(state_dir, super_kubeconfig=super_kubeconfig.resolve()).start_programs(_progress)
        except (procs.StartError, stack.StackError) as e:
            console.print(f"[red]starting the programs failed:[/red] {e}")
            raise typer.Exit(1) from e
        console.print(f"programs running from {state_dir} (`tispace status/down --state-dir {state_dir}`)")
    console.print(
        f"[green]installed {len(objs)} objects of overlay {overlay} in {time.monotonic() - t0:.0f}s[/green]"
    )
    console.print(
        f"next: tispace vc create NAME --super-kubeconfig {super_kubeconfig} "
        "--provisioner native --version v1.36-native"
    )


@app.command()
def uninstall(
    super_kubeconfig: Annotated[Path, typer.Option(help="The super cluster TiSpace was installed on.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds VirtualClusters may take to go.")] = 300,
) -> None:
    """Remove every VirtualCluster, then exactly what `tispace install` made."""
    from tispacectl import install as install_mod

    if not yes:
        typer.confirm(
            "Delete every VirtualCluster (and its tenant's workloads) and uninstall TiSpace?", abort=True
        )
    try:
        gone = install_mod.uninstall(super_kubeconfig.resolve(), _progress, timeout)
    except install_mod.InstallError as e:
        console.print(f"[red]uninstall failed:[/red] {e}")
        raise typer.Exit(1) from e
    console.print(f"[green]removed {len(gone)} objects[/green]")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Each component: pid, port, health and memory."""
    rows = stack.Stack(state_dir).status()
    if not rows:
        console.print(f"nothing runs from {state_dir} (start it with `tispace up`)")
        raise typer.Exit(1)
    table = Table("component", "pid", "port", "alive", "healthy", "RSS MiB", "detail")
    for row in rows:
        table.add_row(
            row["name"],
            str(row["pid"]),
            str(row["port"]),
            _yes(row["alive"]),
            _yes(row["healthy"]),
            f"{row['rss'] / 2**20:.0f}",
            row.get("detail", ""),
        )
    console.print(table)
    console.print(f"total RSS {sum(row['rss'] for row in rows) / 2**20:.0f} MiB")
    if not all(row["alive"] and row["healthy"] for row in rows):
        raise typer.Exit(1)


def _yes(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


SuperOpt = Annotated[
    Path | None, typer.Option("--super-kubeconfig", help="Super cluster (default: the local one).")
]


def _super(state_dir: Path, super_kubeconfig: Path | None) -> Path:
    path = super_kubeconfig or stack.Stack(state_dir).super_kubeconfig
    if not path.exists():
        console.print(
            f"[red]no super cluster kubeconfig at {path}[/red]: run `tispace up` or pass --super-kubeconfig"
        )
        raise typer.Exit(1)
    return path


def _run(super_path: Path, work: Callable[[Client], Awaitable[None]]) -> None:
    async def go() -> None:
        async with Client.from_kubeconfig(super_path) as client:
            await work(client)

    try:
        asyncio.run(go())
    except ApiError as e:
        console.print(f"[red]{e.reason or e.status}:[/red] {e.message}")
        raise typer.Exit(1) from None
    except TimeoutError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None


# The programs in the foreground, between the local stack's commands and the bench (help order).
for command in (programs.manager, programs.syncer, programs.portal):
    app.command()(command)
app.command("vn-agent")(programs.vn_agent)


class _StackSyncer:
    """The stack's syncer as the bench sees it: measured, and restarted in place."""

    def __init__(self, s: stack.Stack, comp: procs.Component) -> None:
        self.stack, self.comp = s, comp

    def pid(self) -> int:
        return self.comp.proc.pid

    def port(self) -> int:
        return self.comp.port

    def restart(self) -> None:
        self.comp = self.stack.restart("syncer")


def _process_groups(s: stack.Stack) -> dict[str, list[int]]:
    """Where CPU goes during a bench phase: the super cluster's parts, TiSpace, tenant control planes."""
    groups: dict[str, list[int]] = {}
    for c in s.local.components() if s.local else []:
        groups.setdefault("super etcd" if c.name == "etcd" else f"super {c.name}", []).append(c.proc.pid)
    for c in s.own.load():
        groups[c.name] = [c.proc.pid]
    for registry in (s.dir / "tenants").glob("*/procs.json"):
        for c in procs.Registry(registry).load():
            groups.setdefault(f"tenant {c.name}", []).append(c.proc.pid)
    return groups


@app.command()
def bench(
    tenant_count: Annotated[int, typer.Option("--tenants", help="Tenants to create.")] = 1,
    pods: Annotated[int, typer.Option(help="Pods per tenant (and per direct namespace).")] = 100,
    template: Annotated[
        str, typer.Option(help="Objects per pod: plain, claim (a PVC) or service.")
    ] = "plain",
    noisy: Annotated[
        int, typer.Option(help="Noisy-tenant mode: tenant 0 creates this many times more pods (0: off).")
    ] = 0,
    quick: Annotated[
        bool, typer.Option(help="2 tenants x 50 plain pods: a smoke run of a few minutes.")
    ] = False,
    fifo: Annotated[
        bool, typer.Option(help="Run the syncer without fair queuing for this bench (the baseline).")
    ] = False,
    output: Annotated[
        Path, typer.Option(help="JSON file with every figure (a PNG is written next to it).")
    ] = Path("bench-results/bench.json"),
    profile: Annotated[
        bool,
        typer.Option(help="py-spy flame graph of the syncer through the tenants phase (SVG next to it)."),
    ] = False,
    idle: Annotated[
        float, typer.Option(help="Seconds one new tenant's control plane is watched idle first (CPU, RSS).")
    ] = 0,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Pods through tenants vs directly in the super cluster, in one run (needs `tispace up`)."""
    import contextlib
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tispacectl import bench as bench_mod

    try:
        bench_mod.require_plotting()
    except bench_mod.PlottingMissing as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(1) from None
    if template not in bench_mod.TEMPLATES:
        console.print(
            f"[red]unknown template {template!r}[/red]: use one of {', '.join(bench_mod.TEMPLATES)}"
        )
        raise typer.Exit(2)
    plan = (
        bench_mod.QUICK
        if quick
        else bench_mod.Plan(tenants=tenant_count, pods=pods, template=template, noisy=noisy)
    )
    s = stack.Stack(state_dir)
    syncer_comp = next((c for c in s.own.load() if c.name == "syncer" and procs.alive(c.proc)), None)
    if syncer_comp is None:
        console.print("[red]no running syncer[/red]: start the stack with `tispace up` first")
        raise typer.Exit(1)
    if fifo:
        console.print("[dim]restarting the syncer without fair queuing (--fifo) for this bench[/dim]")
        syncer_comp = s.restart("syncer", lambda argv: [*argv, "--fifo"])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with contextlib.ExitStack() as restore, Progress(*columns, console=console) as bar:
        if fifo:
            restore.callback(s.restart, "syncer", lambda argv: [a for a in argv if a != "--fifo"])
        tasks = {
            "through": bar.add_task("pods Running through tenants", total=plan.total),
            "direct": bar.add_task("pods Running directly", total=plan.total),
        }
        result = aio.run(
            bench_mod.run(
                s.super_kubeconfig,
                plan,
                syncer=_StackSyncer(s, syncer_comp),
                state_dir=s.dir,
                progress=lambda m: bar.console.print(f"[dim]{m}[/dim]"),
                tick=lambda path, n: bar.advance(tasks[path], n),
                processes=lambda: _process_groups(s),
                profile=output.with_suffix(".svg") if profile else None,
                idle=idle,
            )
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    png = output.with_suffix(".png")
    bench_mod.plot(result, png)
    table = Table("path", "pods", "seconds", "pods/s", "p50 s", "p90 s", "p99 s")
    for path in ("through_tenants", "direct", "quiet_tenants"):
        if path in result:
            x = result[path]
            table.add_row(path, *(str(x[k]) for k in ("pods", "seconds", "throughput", "p50", "p90", "p99")))
    console.print(table)
    console.print(
        f"throughput ratio {result['throughput_ratio']}, CPU ratio {result.get('cpu_ratio', '-')}, "
        f"requests ratio {result.get('requests_ratio', '-')}, p99 overhead {result['p99_overhead_s']} s; "
        f"syncer {result['syncer_cpu_seconds']} CPU-s, peak RSS {result['syncer_peak_rss_mib']} MiB "
        f"({result['syncer_rss_kib_per_pod']} KiB per pod); "
        f"drift check {result['drift_check_seconds']} s, {result['drift_check_cpu_seconds']} CPU-s "
        f"(again {result['drift_check_again_seconds']} s); "
        f"resynced {result['resync_after_restart_seconds']} s "
        f"after a restart; tenant control plane {result['tenant_control_plane_rss_mib']} MiB; "
        f"syncer {result['syncer_cpu_ms_per_pod']} ms CPU per pod; requests per pod: super "
        f"{result['requests_per_pod_through_tenants']['super']['total']} through tenants vs "
        f"{result['requests_per_pod_direct']['super']['total']} direct, tenants "
        f"{result['requests_per_pod_through_tenants']['tenants']['total']}; written to {output} and {png}"
    )


@app.command("kubeconfig")
def kubeconfig_cmd(
    name: Annotated[str, typer.Argument(help="VirtualCluster name.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    user: Annotated[
        str,
        typer.Option(
            help="Issue a client certificate for this user (cluster-admin in the "
            "tenant only); default: the tenant admin kubeconfig."
        ),
    ] = "",
    days: Annotated[int, typer.Option(help="Validity of the user certificate.")] = 30,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (mode 0600).")] = None,
    state_dir: StateDir = DEFAULT_STATE,
    super_kubeconfig: SuperOpt = None,
) -> None:
    """Print (or write) a kubeconfig for a tenant."""

    async def work(client: Client) -> None:
        if user:
            vc = await client.get(r.VIRTUALCLUSTERS, name, namespace)
            config = await tenants.user_kubeconfig(client, vc, user, days)
        else:
            config = await tenants.admin_kubeconfig(client, name, namespace)
        if output:
            kubeconfig_file.write(output, config)
            console.print(f"wrote {output}", style="dim")
        else:
            print(kubeconfig_file.dump(config), end="")

    _run(_super(state_dir, super_kubeconfig), work)


vc = typer.Typer(no_args_is_help=True, help="Manage VirtualClusters (admins).")
app.add_typer(vc, name="vc")


@vc.command("create")
def vc_create(
    name: str,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    version: Annotated[str, typer.Option(help="ClusterVersion name.")] = tenants.DEFAULT_VERSION,
    owner: str = "",
    provisioner: str = "process",
    wait: Annotated[bool, typer.Option(help="Wait until Running.")] = True,
    timeout: float = 180,
    state_dir: StateDir = DEFAULT_STATE,
    super_kubeconfig: SuperOpt = None,
) -> None:
    """Create a VirtualCluster and (by default) wait until it runs."""

    async def work(client: Client) -> None:
        if version == tenants.DEFAULT_VERSION:
            await client.ensure(r.CLUSTERVERSIONS, tenants.cluster_version())
        obj = tenants.virtual_cluster(name, namespace, version=version, owner=owner, provisioner=provisioner)
        await client.create(r.VIRTUALCLUSTERS, obj, namespace)
        console.print(f"virtualcluster {namespace}/{name} created")
        if wait:
            t0 = time.monotonic()
            with console.status("waiting for Running") as st:
                await tenants.wait_phase(
                    client,
                    name,
                    namespace,
                    timeout=timeout,
                    progress=lambda s: st.update(f"waiting for Running: {s}"),
                )
            console.print(
                f"[green]Running[/green] after {time.monotonic() - t0:.1f}s; kubeconfig: "
                f"tispace kubeconfig {name} -n {namespace}"
            )

    _run(_super(state_dir, super_kubeconfig), work)


@vc.command("list")
def vc_list(state_dir: StateDir = DEFAULT_STATE, super_kubeconfig: SuperOpt = None) -> None:
    """Every VirtualCluster with phase, version, owner and root namespace."""

    async def work(client: Client) -> None:
        table = Table("namespace", "name", "phase", "version", "owner", "root namespace", "message")
        for item in (await client.list(r.VIRTUALCLUSTERS))["items"]:
            st, spec, meta = item.get("status") or {}, item["spec"], item["metadata"]
            table.add_row(
                meta["namespace"],
                meta["name"],
                st.get("phase", "Pending"),
                spec.get("clusterVersionName"),
                spec.get("owner", ""),
                st.get("clusterNamespace", ""),
                st.get("message", ""),
            )
        console.print(table)

    _run(_super(state_dir, super_kubeconfig), work)


@vc.command("get")
def vc_get(
    name: str,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    state_dir: StateDir = DEFAULT_STATE,
    super_kubeconfig: SuperOpt = None,
) -> None:
    """One VirtualCluster: phase, endpoint and conditions."""

    async def work(client: Client) -> None:
        item = await client.get(r.VIRTUALCLUSTERS, name, namespace)
        st = item.get("status") or {}
        console.print(
            f"[bold]{namespace}/{name}[/bold] phase={st.get('phase', 'Pending')} "
            f"root={st.get('clusterNamespace', '')} endpoint={st.get('apiServerEndpoint', '')}"
        )
        table = Table("condition", "status", "reason", "message", "since")
        for c in st.get("conditions") or []:
            table.add_row(
                c["type"],
                c["status"],
                c.get("reason", ""),
                c.get("message", ""),
                c.get("lastTransitionTime", ""),
            )
        console.print(table)

    _run(_super(state_dir, super_kubeconfig), work)


@vc.command("delete")
def vc_delete(
    name: str,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    wait: bool = True,
    state_dir: StateDir = DEFAULT_STATE,
    super_kubeconfig: SuperOpt = None,
) -> None:
    """Delete a VirtualCluster and everything it made."""

    async def work(client: Client) -> None:
        await client.delete(r.VIRTUALCLUSTERS, name, namespace)
        if wait:
            with console.status(f"deleting {namespace}/{name}"):
                await tenants.wait_gone(client, name, namespace)
        console.print(f"virtualcluster {namespace}/{name} deleted")

    _run(_super(state_dir, super_kubeconfig), work)
