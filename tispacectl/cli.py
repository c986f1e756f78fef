"""`tispace`: run the local stack, inspect it, manage tenants."""

from __future__ import annotations

import asyncio
import enum
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from portal import settings as portal_settings
from syncer import settings as syncer_settings
from tispace import kubeconfig as kubeconfig_file
from tispace import procs, tenants
from tispace.kube import resources as r
from tispace.kube.client import ApiError, Client
from tispacectl import localcluster, stack
from vc_manager import settings as manager_settings
from vn_agent import settings as vn_agent_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Piped output (CI logs, scripts) is not wrapped at 80 columns: commands must stay copyable.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where pids, logs, PKI and data live.")]
DEFAULT_STATE = Path(".tispace")
Identity = Annotated[
    str, typer.Option(help="This replica's name among several (default: host name and pid).")
]
ListenHost = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a pod).")]
# Each program's defaults are written once, in its settings module; its command's options show them.
ManagerSettings = manager_settings.Settings
PortalSettings = portal_settings.Settings
PortalQuota = portal_settings.Quota
VnAgentSettings = vn_agent_settings.Settings


class NodeMode(enum.StrEnum):
    on_demand = "onDemand"
    all = "all"


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


@app.command()
def manager(
    super_kubeconfig: Annotated[Path, typer.Option(help="Super cluster to watch.")],
    state_dir: StateDir = DEFAULT_STATE,
    etcd_servers: Annotated[
        str, typer.Option(help="Shared etcd for tenants ('' = own etcd each).")
    ] = ManagerSettings.etcd_servers,
    health_port: Annotated[int, typer.Option(help="Liveness endpoint port.")] = ManagerSettings.health_port,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds a control plane may take to be ready.")
    ] = ManagerSettings.ready_timeout,
    listen_host: ListenHost = ManagerSettings.listen_host,
    leader_namespace: Annotated[
        str, typer.Option(help="Namespace of the leader Lease, to run several replicas (one leads).")
    ] = ManagerSettings.leader_namespace,
    identity: Identity = ManagerSettings.identity,
    egress_socket: Annotated[
        str, typer.Option(help="Local mode: Unix socket of the CONNECT proxy tenant API servers use.")
    ] = ManagerSettings.egress_socket,
    verbose: bool = False,
) -> None:
    """Run vc_manager in the foreground (`tispace up` starts it in the background)."""
    from vc_manager import main

    main.main(
        ManagerSettings(
            super_kubeconfig=super_kubeconfig.resolve(),
            state_dir=state_dir.resolve(),
            etcd_servers=etcd_servers,
            health_port=health_port,
            ready_timeout=ready_timeout,
            listen_host=listen_host,
            leader_namespace=leader_namespace,
            identity=identity,
            egress_socket=egress_socket,
        ),
        verbose=verbose,
    )


@app.command()
def syncer(
    super_kubeconfig: Annotated[Path, typer.Option(help="Super cluster to sync into.")],
    port: Annotated[int, typer.Option(help="Port of /healthz, /metrics, /status (0: none).")] = 0,
    listen_host: ListenHost = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Concurrent reconciles across tenants.")] = 50,
    vn_agent_port: Annotated[
        int, typer.Option(help="Port virtual nodes advertise for the kubelet API (vn_agent's).")
    ] = VnAgentSettings.port,
    runtime_class: Annotated[
        str, typer.Option(help="RuntimeClass of every tenant pod ('': none, on a cluster without Kata).")
    ] = syncer_settings.RUNTIME_CLASS,
    vn_agent_host: Annotated[
        str,
        typer.Option(help="Address virtual nodes advertise ('': each super node's own, vn_agent DaemonSet)."),
    ] = "127.0.0.1",
    default_storage_class: Annotated[
        str, typer.Option(help="Super StorageClass of tenant claims that name none.")
    ] = syncer_settings.STORAGE_CLASS,
    node_label_prefix: Annotated[
        list[str] | None,
        typer.Option(help="Super node label prefix copied to virtual nodes (repeat; e.g. a rack label)."),
    ] = None,
    nodes: Annotated[
        NodeMode,
        typer.Option(
            help="Nodes of tenants whose VirtualCluster spec.nodes is unset: onDemand (a node while a pod "
            "runs on it) or all (every super node from the start)."
        ),
    ] = NodeMode.on_demand,
    webhook_host: Annotated[
        str, typer.Option(help="Address tenant API servers reach the Service admission webhook at.")
    ] = "127.0.0.1",
    webhook_port: Annotated[int, typer.Option(help="TLS port of that webhook (0: any free port).")] = 0,
    tenant_concurrency: Annotated[
        int, typer.Option(help="Default cap on one tenant's reconciles in flight (0: none).")
    ] = 8,
    shard_namespace: Annotated[
        str, typer.Option(help="Namespace of replica Leases: run several replicas that split tenants.")
    ] = "",
    identity: Identity = "",
    lease_seconds: Annotated[
        float, typer.Option(help="Seconds before a dead replica's tenants are taken over.")
    ] = 15.0,
    fifo: Annotated[
        bool, typer.Option(help="No fair queuing: keys in arrival order across tenants (for comparison).")
    ] = False,
    verbose: bool = False,
) -> None:
    """Run the syncer in the foreground (`tispace up` starts it in the background)."""
    from syncer import main

    main.main(
        syncer_settings.Settings(
            super_kubeconfig=super_kubeconfig.resolve(),
            port=port,
            workers=workers,
            webhook_host=webhook_host,
            webhook_port=webhook_port,
            listen_host=listen_host,
            shard_namespace=shard_namespace,
            identity=identity,
            lease_seconds=lease_seconds,
            fair=not fifo,
            options=syncer_settings.SyncerOptions(
                runtime_class=runtime_class,
                vn_agent_host=vn_agent_host,
                default_storage_class=default_storage_class,
                node_label_prefixes=tuple(node_label_prefix or ()),
                node_selector={} if nodes is NodeMode.all else None,
                vn_agent_port=vn_agent_port,
                tenant_concurrency=tenant_concurrency,
            ),
        ),
        verbose=verbose,
    )


@app.command()
def portal(
    super_kubeconfig: Annotated[Path, typer.Option(help="Super cluster where VirtualClusters live.")],
    issuer: Annotated[str, typer.Option(help="OIDC issuer URL (Google: https://accounts.google.com).")],
    client_id: Annotated[str, typer.Option(help="OIDC client id registered for the portal.")],
    client_secret_file: Annotated[Path, typer.Option(help="File holding that client's secret.")],
    session_key_file: Annotated[
        Path, typer.Option(help="File holding the Fernet key sealing session cookies (made if missing).")
    ],
    public_url: Annotated[
        str, typer.Option(help="URL browsers use; the provider must allow <public-url>/auth/callback.")
    ] = "",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = PortalSettings.port,
    listen_host: ListenHost = PortalSettings.listen_host,
    namespace: Annotated[
        str, typer.Option(help="Namespace of the VirtualClusters it creates.")
    ] = PortalSettings.namespace,
    owner_claim: Annotated[
        str, typer.Option(help="ID token claim naming the owner.")
    ] = PortalSettings.owner_claim,
    groups_claim: Annotated[
        str, typer.Option(help="ID token claim listing the user's groups.")
    ] = PortalSettings.groups_claim,
    admin_group: Annotated[
        str, typer.Option(help="Group whose members see every tenant.")
    ] = PortalSettings.admin_group,
    allowed_group: Annotated[
        list[str] | None, typer.Option(help="Only members of this group may log in (repeat).")
    ] = None,
    allowed_domain: Annotated[
        list[str] | None, typer.Option(help="Only owners in this email domain may log in (repeat).")
    ] = None,
    session_hours: Annotated[float, typer.Option(help="Hours a login lasts.")] = PortalSettings.session_hours,
    max_clusters: Annotated[int, typer.Option(help="Clusters per owner.")] = PortalQuota.clusters,
    max_instance_cpu: Annotated[
        float, typer.Option(help="Dev instance cores per owner, all clusters.")
    ] = PortalQuota.instance_cpu,
    max_instance_memory_gib: Annotated[
        int, typer.Option(help="Dev instance memory per owner (GiB).")
    ] = PortalQuota.instance_memory_gib,
    max_instance_disk_gib: Annotated[
        int, typer.Option(help="Dev instance disk per owner (GiB).")
    ] = PortalQuota.instance_disk_gib,
    instance_image: Annotated[
        str, typer.Option(help="Default dev instance image (sshd, docker).")
    ] = PortalSettings.instance_image,
    instance_runtime_class: Annotated[
        str, typer.Option(help="RuntimeClass of dev instances.")
    ] = PortalSettings.instance_runtime_class,
    instance_storage_class: Annotated[
        str, typer.Option(help="StorageClass of their disks.")
    ] = PortalSettings.instance_storage_class,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle to trust for the provider.")] = None,
    verbose: bool = False,
) -> None:
    """Run the self-service portal in the foreground (`tispace up` starts it in the background)."""
    from portal import main, session

    if not client_secret_file.exists():
        console.print(f"[red]--client-secret-file {client_secret_file} does not exist[/red]")
        raise typer.Exit(2)
    main.main(
        PortalSettings(
            super_kubeconfig=super_kubeconfig.resolve(),
            issuer=issuer,
            client_id=client_id,
            client_secret=client_secret_file.read_text().strip(),
            public_url=public_url or f"http://{listen_host}:{port}",
            session_secret=session.key_file(session_key_file),
            port=port,
            listen_host=listen_host,
            namespace=namespace,
            owner_claim=owner_claim,
            groups_claim=groups_claim,
            admin_group=admin_group,
            allowed_groups=tuple(allowed_group or ()),
            allowed_domains=tuple(allowed_domain or ()),
            session_hours=session_hours,
            quota=PortalQuota(
                clusters=max_clusters,
                instance_cpu=max_instance_cpu,
                instance_memory_gib=max_instance_memory_gib,
                instance_disk_gib=max_instance_disk_gib,
            ),
            instance_image=instance_image,
            instance_runtime_class=instance_runtime_class,
            instance_storage_class=instance_storage_class,
            ca_file=ca_file,
        ),
        verbose=verbose,
    )


@app.command("vn-agent")
def vn_agent_cmd(
    super_kubeconfig: Annotated[Path, typer.Option(help="Super cluster whose pods it reaches.")],
    port: Annotated[
        int, typer.Option(help="Port virtual nodes advertise as their kubelet's.")
    ] = VnAgentSettings.port,
    listen_host: ListenHost = VnAgentSettings.listen_host,
    state_dir: StateDir = DEFAULT_STATE,
    direct: Annotated[
        bool, typer.Option(help="Reach super kubelets directly, not through the super API server.")
    ] = VnAgentSettings.direct,
    kubelet_client_cert: Annotated[Path | None, typer.Option(help="Direct mode: client cert.")] = None,
    kubelet_client_key: Annotated[Path | None, typer.Option(help="Direct mode: client key.")] = None,
    kubelet_ca: Annotated[Path | None, typer.Option(help="Direct mode: CA of kubelet serving certs.")] = None,
    node_name: Annotated[
        str, typer.Option(help="The one super node this agent serves (as a DaemonSet); empty: every node.")
    ] = VnAgentSettings.node_name,
    egress_socket: Annotated[
        str, typer.Option(help="Local mode: Unix socket of the CONNECT proxy tenant API servers use.")
    ] = VnAgentSettings.egress_socket,
    verbose: bool = False,
) -> None:
    """Run vn_agent in the foreground (`tispace up` starts it in the background)."""
    from vn_agent import main

    main.main(
        VnAgentSettings(
            super_kubeconfig=super_kubeconfig.resolve(),
            state_dir=state_dir.resolve(),
            port=port,
            direct=direct,
            kubelet_client_cert=kubelet_client_cert,
            kubelet_client_key=kubelet_client_key,
            kubelet_ca=kubelet_ca,
            node_name=node_name,
            listen_host=listen_host,
            egress_socket=egress_socket,
        ),
        verbose=verbose,
    )


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
        result = asyncio.run(
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
        f"throughput ratio {result['throughput_ratio']}, p99 overhead {result['p99_overhead_s']} s; "
        f"syncer {result['syncer_cpu_seconds']} CPU-s, peak RSS {result['syncer_peak_rss_mib']} MiB; "
        f"drift check {result['drift_check_seconds']} s (again {result['drift_check_again_seconds']} s); "
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
