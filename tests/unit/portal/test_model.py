"""The portal's form rules, quota arithmetic and the objects a form becomes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal import model
from portal.settings import Quota
from tispace import naming

NS = "tispace-portal"
CLUSTER = {"name": "web", "version": "v1.36", "max_pods": "50", "max_storage_gib": "100"}
INSTANCE = {"name": "box", "image": "", "cpu": "2", "memory_gib": "4", "disk_gib": "20", "ssh_key": ""}


def test_a_good_cluster_form() -> None:
    req = model.parse_cluster(CLUSTER, namespace=NS, versions=["v1.36", "v1.35"])
    assert req == model.ClusterRequest("web", "v1.36", 50, 100)
    vc = model.virtual_cluster(req, owner="dev@example.com", namespace=NS)
    assert vc["metadata"] == {"name": "web", "namespace": NS, "labels": {model.MANAGED_BY: model.PORTAL}}
    assert vc["spec"]["owner"] == "dev@example.com"
    assert vc["spec"]["clusterVersionName"] == "v1.36"
    assert vc["spec"]["resourceQuota"] == {"hard": {"pods": "50", "requests.storage": "100Gi"}}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "empty"),
        ("name", "Web", "invalid"),
        ("name", "-web", "invalid"),
        ("name", "web_1", "invalid"),
        ("name", "web.1", "invalid"),
        ("name", "a" * 42, "at most 41"),
        ("name", "<script>", "invalid"),
        ("version", "v9.99", "not offered"),
        ("max_pods", "0", "between 1 and 1000"),
        ("max_pods", "1001", "between 1 and 1000"),
        ("max_pods", "ten", "whole number"),
        ("max_pods", "2.5", "whole number"),
        ("max_storage_gib", "-1", "between"),
        ("max_storage_gib", "", "whole number"),
    ],
)
def test_bad_cluster_forms_say_what_to_change(field: str, value: str, message: str) -> None:
    with pytest.raises(model.FormError, match=message):
        model.parse_cluster({**CLUSTER, field: value}, namespace=NS, versions=["v1.36"])


def test_the_longest_cluster_name_still_makes_a_root_namespace() -> None:
    name = "a" * model.max_cluster_name(NS)
    req = model.parse_cluster({**CLUSTER, "name": name}, namespace=NS, versions=["v1.36"])
    root = naming.root_namespace(NS, req.name, "uid")
    assert naming.is_dns1123_label(root)


def test_a_good_instance_form_becomes_a_statefulset_of_one_and_an_ssh_service() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB me@laptop"
    req = model.parse_instance({**INSTANCE, "ssh_key": f"  {key}\n"}, default_image="devbox:1")
    assert req == model.InstanceRequest("box", "devbox:1", Decimal("2.0"), 4, 20, key)
    service, sts = model.instance_objects(req, runtime_class="kata", storage_class="rook-ceph-block")
    assert service["kind"] == "Service" and sts["kind"] == "StatefulSet"
    assert service["spec"]["ports"] == [{"name": "ssh", "port": 22, "targetPort": "ssh"}]
    assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"] == {model.INSTANCE: "box"}
    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == "box"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    pod = spec["template"]["spec"]
    assert pod["runtimeClassName"] == "kata"
    (c,) = pod["containers"]
    assert c["image"] == "devbox:1"
    assert c["securityContext"] == {"privileged": True}
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "2000m", "memory": "4Gi"}
    assert c["env"] == [{"name": "SSH_AUTHORIZED_KEYS", "value": key}]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "rook-ceph-block"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert model.instance_usage(sts) == model.Usage(Decimal(2), 4.0, 20.0, 1)


def test_no_runtime_or_storage_class_leaves_the_cluster_defaults() -> None:
    req = model.parse_instance(INSTANCE, default_image="devbox:1")
    _, sts = model.instance_objects(req, runtime_class="", storage_class="")
    assert "runtimeClassName" not in sts["spec"]["template"]["spec"]
    assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert "env" not in sts["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Box", "invalid"),
        ("name", "b" * 53, "at most 52"),
        ("name", "1box", "must start with a letter"),
        ("image", "not an image", "not an image reference"),
        ("image", "UPPER/case", "not an image reference"),
        ("cpu", "two", "number of cores"),
        ("cpu", "0", "between 0.1 and 64"),
        ("cpu", "0.25", "steps of 0.1"),
        ("cpu", "65", "between 0.1 and 64"),
        ("cpu", "NaN", "between 0.1 and 64"),
        ("cpu", "Infinity", "between 0.1 and 64"),
        ("memory_gib", "0", "between 1 and 512"),
        ("disk_gib", "1e3", "whole number"),
        ("ssh_key", "not a key", "SSH public key"),
        ("ssh_key", "ssh-ed25519 AAAA\nssh-rsa BBBB", None),
    ],
)
def test_bad_instance_forms_say_what_to_change(field: str, value: str, message: str | None) -> None:
    if message is None:  # newlines are folded into one line, which still has to be one key
        req = model.parse_instance({**INSTANCE, field: value}, default_image="d")
        assert "\n" not in req.ssh_key
        return
    with pytest.raises(model.FormError, match=message):
        model.parse_instance({**INSTANCE, field: value}, default_image="d")


def test_cluster_quota() -> None:
    model.check_cluster_quota(Quota(clusters=2), 1)
    with pytest.raises(model.FormError, match="2 of at most 2 clusters"):
        model.check_cluster_quota(Quota(clusters=2), 2)


def test_instance_quota_counts_every_limit() -> None:
    quota = Quota(instance_cpu=4, instance_memory_gib=8, instance_disk_gib=50)
    req = model.parse_instance(INSTANCE, default_image="d")  # 2 cores, 4 GiB, 20 GiB
    model.check_instance_quota(quota, model.Usage(Decimal(2), 4, 30, 1), req)  # exactly full
    with pytest.raises(model.FormError, match=r"CPU 4.1 of 4"):
        model.check_instance_quota(quota, model.Usage(Decimal("2.1"), 0, 0, 1), req)
    with pytest.raises(model.FormError, match=r"memory 9 of 8 GiB"):
        model.check_instance_quota(quota, model.Usage(Decimal(0), 5, 0, 1), req)
    with pytest.raises(model.FormError, match=r"disk 51 of 50 GiB"):
        model.check_instance_quota(quota, model.Usage(Decimal(0), 0, 31, 1), req)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("4Gi", str(4 * 2**30)),
        ("1k", "1000"),
        ("2e3", "2000"),
        ("1Ti", str(2**40)),
        ("128974848", "128974848"),
        ("100M", "100000000"),
        ("100u", "0.0001"),
        ("5n", "0.000000005"),
        ("1Pi", str(2**50)),
        ("2E", "2000000000000000000"),
    ],
)
def test_quantities(text: str, value: str) -> None:
    assert model.quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "1Xi", "one"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        model.quantity(text)


@given(cpu=st.integers(1, 640), mem=st.integers(1, 512), disk=st.integers(1, 4096))
def test_usage_reads_back_what_a_form_asked_for(cpu: int, mem: int, disk: int) -> None:
    form = {**INSTANCE, "cpu": str(Decimal(cpu) / 10), "memory_gib": str(mem), "disk_gib": str(disk)}
    req = model.parse_instance(form, default_image="d")
    _, sts = model.instance_objects(req, runtime_class="kata", storage_class="c")
    assert model.instance_usage(sts) == model.Usage(req.cpu, float(mem), float(disk), 1)


def test_usage_of_hand_edited_statefulsets_and_pods() -> None:
    sts = {
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                        {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}},
                    ]
                }
            },
        }
    }
    assert model.instance_usage(sts) == model.Usage(Decimal("2.5"), 2.0, 0.0, 1)
    pods = [
        {"spec": {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}},
        {"spec": {"containers": [{}]}, "status": {"phase": "Running"}},
        {
            "spec": {"containers": [{"resources": {"requests": {"cpu": "8"}}}]},
            "status": {"phase": "Succeeded"},
        },
    ]
    assert model.pod_usage(pods) == (2, Decimal("0.5"), 0.5)
    odd = {"spec": {"containers": [{"resources": {"requests": {"cpu": "1Qx", "memory": "1Gi"}}}]}}
    assert model.pod_usage([odd]) == (1, Decimal(0), 1.0)  # unreadable counts as nothing, never fails
    assert model.total([model.Usage(Decimal(1), 1, 1, 1)] * 3) == model.Usage(Decimal(3), 3, 3, 3)
    assert model.owner_usage({"a": [sts, sts], "b": [sts], "c": []}) == model.Usage(
        Decimal("7.5"), 6.0, 0.0, 3
    )
