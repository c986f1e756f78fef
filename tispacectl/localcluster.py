"""A real Kubernetes super cluster as local processes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake nodes that
run pods through their lifecycle and serve the kubelet API) on free 127.0.0.1 ports.
`tispace up` and the e2e fixtures both use this module, so what the tests exercise is what
a developer runs. State (pids, ports, logs, PKI, etcd data) lives in one directory, so a
later run can reuse, repair or stop what an earlier one started.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tispace import binaries, kubeconfig, naming, pki, procs

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
# The classes of the production overlay (kata-rook-ceph), so the programs run on their defaults here.
RUNTIME_CLASS = "kata"
STORAGE_CLASS = "rook-ceph-block"
NODE_ANNOTATION = "kwok.x-k8s.io/node"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeSpec:
    """The fake super nodes KWOK manages."""

    count: int = 4
    cpu: str = "32"
    memory: str = "128Gi"
    pods: str = "110"
    labels: dict[str, str] = field(default_factory=dict)
    zones: tuple[str, ...] = ("zone-a", "zone-b")


def node_manifest(name: str, spec: NodeSpec, zone: str) -> dict[str, Any]:
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                NODE_ANNOTATION: "fake",
                # KWOK serves each node's resource metrics under its own path (metrics-server honours this).
                "metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{name}/metrics/resource",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "type": "kwok",
                **spec.labels,
            },
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def furniture() -> list[dict[str, Any]]:
    """What TiSpace expects of every super cluster: the Kata runtime class and the Ceph class.

    Both are public (shared read-only with every tenant). Locally the class is served by
    kube-controller-manager's host-path provisioner (one PV per claim); in production
    Rook-Ceph's CSI driver serves the same class name.
    """
    return [
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": RUNTIME_CLASS, "labels": {naming.LABEL_PUBLIC: "true"}},
            "handler": RUNTIME_CLASS,
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "labels": {naming.LABEL_PUBLIC: "true"},
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/host-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
        },
    ]


def kubectl(kubeconfig_path: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """Run the pinned kubectl against a cluster; raise with its stderr on failure."""
    out = subprocess.run(
        [binaries.path("kubectl"), f"--kubeconfig={kubeconfig_path}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def apply(kubeconfig_path: Path, objects: list[dict[str, Any]]) -> None:
    kubectl(
        kubeconfig_path,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )


class SuperCluster:
    """The local super cluster kept in `state_dir`."""

    def __init__(self, state_dir: Path, nodes: NodeSpec | None = None) -> None:
        self.dir = state_dir.resolve()
        self.nodes = nodes or NodeSpec()
        self.kubeconfig = self.dir / "super.kubeconfig"
        self._registry = procs.Registry(self.dir / "super-state.json")
        self._pki = self.dir / "pki"

    # --- state -------------------------------------------------------------------------
    def components(self) -> list[procs.Component]:
        return self._registry.load()

    def restart(self, name: str) -> procs.Component:
        """Stop one component (etcd, kube-apiserver, ...) and start it again as it was."""
        return self._registry.restart(name)

    def running(self) -> bool:
        comps = self.components()
        return bool(comps) and all(c.ok() for c in comps)

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in self.components()]

    # --- lifecycle -----------------------------------------------------------------------
    def up(self, progress: Progress = lambda _: None) -> None:
        """Start everything, or reuse it when it already runs; recovers from a killed run."""
        if self.running():
            progress("super cluster already running")
            return
        if self.components():
            progress("stale state from an earlier run: stopping what is left and restarting")
            self.down()
        started: list[procs.Component] = []
        try:
            self._start_all(started, progress)
        except BaseException:
            for c in reversed(started):
                procs.stop(c.proc)
            self._registry.clear()
            raise

    def down(self) -> None:
        for c in reversed(self.components()):
            procs.stop(c.proc)
        self._registry.clear()

    # --- internals -----------------------------------------------------------------------
    def _start(
        self, started: list[procs.Component], name: str, argv: list[str], port: int, health: str
    ) -> procs.Component:
        comp = procs.Component(procs.spawn(name, argv, self.dir / "logs" / f"{name}.log"), port, health)
        started.append(comp)
        self._registry.save(started)
        return comp

    def _ensure_pki(self) -> None:
        if (self._pki / "admin.key").exists():
            return
        self._pki.mkdir(parents=True, exist_ok=True)
        ca = pki.new_ca("tispace-super-ca")
        serving = pki.issue(
            ca,
            "kube-apiserver",
            server=True,
            hosts=pki.apiserver_hosts(service_ip=SERVICE_IP, cluster_domain=CLUSTER_DOMAIN),
        )
        admin = pki.issue(ca, "tispace-admin", orgs=("system:masters",), client=True)
        sa_key, sa_pub = pki.new_keypair()
        files = {
            "ca.crt": ca.cert_pem,
            "ca.key": ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "admin.crt": admin.cert_pem,
            "admin.key": admin.key_pem,
            "sa.key": sa_key,
            "sa.pub": sa_pub,
        }
        for fname, data in files.items():
            (self._pki / fname).write_bytes(data)
            (self._pki / fname).chmod(0o600)

    def _start_all(self, started: list[procs.Component], progress: Progress) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_pki()
        p = self._pki
        bp = binaries.path

        progress("starting etcd")
        ep, pp = procs.free_port(), procs.free_port()
        etcd = self._start(
            started,
            "etcd",
            [
                bp("etcd"),
                "--name=super",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ep}",
                f"--advertise-client-urls=http://127.0.0.1:{ep}",
                f"--listen-peer-urls=http://127.0.0.1:{pp}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{pp}",
                f"--initial-cluster=super=http://127.0.0.1:{pp}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
                f"--listen-metrics-urls=http://127.0.0.1:{procs.free_port()}",
            ],
            ep,
            f"http://127.0.0.1:{ep}/health",
        )
        procs.wait_healthy(etcd)

        progress("starting kube-apiserver")
        ap = procs.free_port()
        api = self._start(
            started,
            "kube-apiserver",
            [
                bp("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ep}",
                "--etcd-prefix=/registry",
                "--bind-address=127.0.0.1",
                f"--secure-port={ap}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                "--profiling=false",
            ],
            ap,
            f"https://127.0.0.1:{ap}/readyz",
        )
        kubeconfig.write(
            self.kubeconfig,
            kubeconfig.build(
                name="tispace-super",
                server=f"https://127.0.0.1:{ap}",
                ca_pem=(p / "ca.crt").read_bytes(),
                user=pki.CertKey((p / "admin.crt").read_bytes(), (p / "admin.key").read_bytes()),
            ),
        )
        procs.wait_healthy(api)

        progress("starting kube-controller-manager, kube-scheduler and kwok")
        cp, sp, kp = procs.free_port(), procs.free_port(), procs.free_port()
        kcm = self._start(
            started,
            "kube-controller-manager",
            [
                bp("kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cp}",
                "--leader-elect=false",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--enable-hostpath-provisioner=true",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                f"--cert-dir={self.dir / 'kcm-certs'}",
            ],
            cp,
            f"https://127.0.0.1:{cp}/healthz",
        )
        sched = self._start(
            started,
            "kube-scheduler",
            [
                bp("kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sp}",
                "--leader-elect=false",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                f"--cert-dir={self.dir / 'scheduler-certs'}",
            ],
            sp,
            f"https://127.0.0.1:{sp}/healthz",
        )
        kwok = self._start(
            started,
            "kwok",
            [
                bp("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={binaries.kwok_kustomize() / 'stage' / 'fast'}",
                f"--config={self._kwok_config()}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={kp}",
                f"--server-address=127.0.0.1:{kp}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
            kp,
            f"http://127.0.0.1:{kp}/healthz",
        )
        for c in (kcm, sched, kwok):
            procs.wait_healthy(c)

        progress(
            f"creating {self.nodes.count} nodes, RuntimeClass {RUNTIME_CLASS}, StorageClass {STORAGE_CLASS}"
        )
        zones = self.nodes.zones
        apply(
            self.kubeconfig,
            [node_manifest(f"node-{i}", self.nodes, zones[i % len(zones)]) for i in range(self.nodes.count)]
            + furniture(),
        )
        extra = set(kubectl(self.kubeconfig, "get", "nodes", "-l", "type=kwok", "-o", "name").split()) - {
            f"node/node-{i}" for i in range(self.nodes.count)
        }
        if extra:
            kubectl(self.kubeconfig, "delete", *sorted(extra))
        wait = 60 + 2 * self.nodes.count  # KWOK marks nodes Ready one by one; many nodes on a busy machine
        kubectl(
            self.kubeconfig,
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            f"--timeout={wait}s",
            timeout=wait + 30,
        )

    def _kwok_config(self) -> Path:
        """KWOK behaviour: container logs read a file, exec runs a local command, port-forward echoes."""
        kdir = self.dir / "kwok"
        kdir.mkdir(parents=True, exist_ok=True)
        log = kdir / "container.log"
        if not log.exists():
            # CRI log format, as a kubelet keeps it: time, stream, partial/full tag, line.
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
            log.write_text(
                "".join(f"{now} stdout F {m}\n" for m in ("tispace: container started", "tispace: serving"))
            )
        docs = [
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {"name": "all-logs"},
                "spec": {"logs": [{"logsFile": str(log), "previousLogsFile": str(log), "follow": True}]},
            },
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterExec",
                "metadata": {"name": "all-exec"},
                "spec": {
                    "execs": [{"local": {"workDir": str(kdir), "envs": [{"name": "TISPACE", "value": "1"}]}}]
                },
            },
            # Port-forward to any pod port echoes what it receives (a real peer for port-forward tests).
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterPortForward",
                "metadata": {"name": "all-port-forward"},
                "spec": {"forwards": [{"command": ["cat"]}]},
            },
        ]
        # Kubelet resource metrics (1m CPU and 1Mi per container unless annotated), as KWOK ships them.
        for part in ("resource/metrics-resource.yaml", "usage/usage-from-annotation.yaml"):
            docs += list(yaml.safe_load_all((binaries.kwok_kustomize() / "metrics" / part).read_text()))
        cfg = kdir / "config.yaml"
        cfg.write_text("\n---\n".join(json.dumps(d) for d in docs if d))
        return cfg
