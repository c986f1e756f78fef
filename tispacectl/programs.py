"""The four programs' foreground commands: each option's default is read from the program's settings."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from portal import settings as portal_settings
from syncer import settings as syncer_settings
from tispacectl.options import DEFAULT_STATE, StateDir, console
from vc_manager import settings as manager_settings
from vn_agent import settings as vn_agent_settings

Identity = Annotated[
    str, typer.Option(help="This replica's name among several (default: host name and pid).")
]
ListenHost = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a pod).")]
ManagerSettings = manager_settings.Settings
PortalSettings = portal_settings.Settings
PortalQuota = portal_settings.Quota
VnAgentSettings = vn_agent_settings.Settings


class NodeMode(enum.StrEnum):
    on_demand = "onDemand"
    all = "all"


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
    sign_tokens: Annotated[
        bool,
        typer.Option(
            help="Sign tenant pods' tokens with each tenant's key; --no-sign-tokens: a TokenRequest "
            "each, which the tenant's audit log records."
        ),
    ] = syncer_settings.SyncerOptions.sign_tokens,
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
                sign_tokens=sign_tokens,
            ),
        ),
        verbose=verbose,
    )


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


def vn_agent(
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
