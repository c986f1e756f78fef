"""What every tenant control plane runs with to stay small when idle, whichever provisioner starts it.

A tenant is idle most of its life, so its idle footprint is what a super cluster pays per
developer. Each setting keeps upstream behaviour; docs/benchmarks.md (the first, second, thirteenth
and sixteenth rounds) has the measurement behind each one.
"""

from __future__ import annotations

GO_ENV: dict[str, dict[str, str]] = {
    # The API server's heap is mostly long-lived (API schemas): collecting when it grew by half
    # instead of doubled keeps 40 MiB less, for no measurable idle CPU.
    "kube-apiserver": {"GOGC": "50"},
}
"""Environment per component (the process names; the native provisioner maps its containers)."""

UNCACHED: tuple[str, ...] = (
    "limitranges",
    "podtemplates",
    "replicationcontrollers",
    "mutatingadmissionpolicies.admissionregistration.k8s.io",
    "mutatingadmissionpolicybindings.admissionregistration.k8s.io",
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingadmissionpolicies.admissionregistration.k8s.io",
    "validatingadmissionpolicybindings.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
    "apiservices.apiregistration.k8s.io",
    "horizontalpodautoscalers.autoscaling",
    "certificatesigningrequests.certificates.k8s.io",
    "flowschemas.flowcontrol.apiserver.k8s.io",
    "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io",
    "ipaddresses.networking.k8s.io",
    "networkpolicies.networking.k8s.io",
    "servicecidrs.networking.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "deviceclasses.resource.k8s.io",
    "resourceclaims.resource.k8s.io",
    "resourceclaimtemplates.resource.k8s.io",
    "resourceslices.resource.k8s.io",
    "csidrivers.storage.k8s.io",
    "csinodes.storage.k8s.io",
    "csistoragecapacities.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
)
"""Built-in resources a tenant API server keeps no watch cache for (upstream's `--watch-cache-sizes`
with size 0; they are read and watched straight from etcd, with the same API). Each of an API
server's 57 watch caches wakes every second to send bookmarks, which an idle tenant pays for. These
are written rarely and watched by few (the controller-manager and the API server's own informers),
so the cache saves nothing; what the syncer watches, what changes with every pod (pods, nodes,
leases, endpoints) and the workloads a tenant runs (apps, batch, quotas) keep theirs. Eight idle
tenants, alternating runs of 4 minutes: their API servers 17.4 and 18.3 mCPU each with every cache,
13.4 and 14.5 with these off; the shared etcd the same (34 and 35 mCPU in all, against 33 and 36)."""

FLAGS: dict[str, tuple[str, ...]] = {
    "kube-apiserver": (
        "--watch-cache-sizes=" + ",".join(f"{resource}#0" for resource in UNCACHED),
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

Measured and left out: the API server without any watch cache (--watch-cache=false) idles at half
the CPU (4.5 instead of 10.8 mCPU) and 18 MiB less, but under load every read and watch goes to
etcd, which tenants share: 10 x 100 pods cost the etcd and the tenant API servers 3.5 CPU-s more,
and the super cluster's own pods were slower while it lasted."""
