"""What every tenant control plane runs with to stay small when idle, whichever provisioner starts it.

A tenant is idle most of its life, so its idle footprint is what a super cluster pays per
developer. Each setting keeps upstream behaviour; README ("Tenant control plane") has the
measurement behind each one.
"""

from __future__ import annotations

GO_ENV: dict[str, dict[str, str]] = {
    # The API server's heap is mostly long-lived (API schemas): collecting when it grew by half
    # instead of doubled keeps 40 MiB less, for no measurable idle CPU.
    "kube-apiserver": {"GOGC": "50"},
}
"""Environment per component (the process names; the native provisioner maps its containers)."""

FLAGS: dict[str, tuple[str, ...]] = {
    "kube-apiserver": (
        # The plugin taints every new node not-ready until the node controller sees a kubelet's first
        # Ready status, which costs it a GET and a PATCH per node. A virtual node is made with its
        # super node's conditions, so the taint only ever came off again; a node that is not Ready
        # is still tainted by the node controller, which reads its conditions.
        "--disable-admission-plugins=TaintNodesByCondition",
    ),
    "kube-controller-manager": (
        # No kubelet reads a virtual node's TTL annotation, and volumes are attached in the super
        # cluster: these two controllers only write objects nothing uses.
        "--controllers=*,-ttl-controller,-persistentvolume-attach-detach-controller",
        # The syncer renews a virtual node's Lease every 60 s (syncer/resources/nodes.py, LEASE_SECONDS):
        # three renewals missed before a node is Unknown. A VirtualCluster that sets a grace under
        # 60 s makes its nodes flap.
        "--node-monitor-grace-period=180s",
    ),
}
"""Extra flags per component, before the VirtualCluster's own extraArgs (which may override them).

Measured and left out: the API server without its watch cache (--watch-cache=false) idles at half
the CPU (4.5 instead of 10.8 mCPU) and 18 MiB less, but under load every read and watch goes to
etcd, which tenants share: 10 x 100 pods cost the etcd and the tenant API servers 3.5 CPU-s more,
and the super cluster's own pods were slower while it lasted."""
