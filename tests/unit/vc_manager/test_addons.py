"""The tenant DNS add-on: consistent objects, the tenant's domain, kinds the provisioner can apply."""

from tispace.kube import resources as r
from vc_manager import addons


def test_the_dns_add_on_hangs_together() -> None:
    objs = {o["kind"]: o for o in addons.coredns("corp.internal", "example/coredns:1")}
    assert set(objs) <= set(r.BY_KIND)
    deploy, svc = objs["Deployment"], objs["Service"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["metadata"] == {"name": "kube-dns", "namespace": "kube-system", "labels": addons.LABELS}
    assert all(pod_labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert (
        deploy["spec"]["template"]["spec"]["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"]
    )
    assert objs["ClusterRoleBinding"]["subjects"][0]["name"] == "coredns"
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "example/coredns:1"
    assert "kubernetes corp.internal in-addr.arpa" in objs["ConfigMap"]["data"]["Corefile"]
    # Upstream lookups go to the super node's resolvers, not back to itself.
    assert deploy["spec"]["template"]["spec"]["dnsPolicy"] == "Default"
