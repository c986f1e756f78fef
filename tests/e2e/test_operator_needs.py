"""What operators such as tidb-operator do to their pods and volumes, through a real tenant and syncer.

The super cluster here has no CSI resizer or modifier (its class is served by the host-path
provisioner), so where a test needs one, the test writes what a resizer writes, on the super side.
"""

from __future__ import annotations

import json

from tests.e2e.conftest import SyncerProc, TenantHandle
from tests.e2e.helpers import event, eventually, pod
from tispace import naming
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl.localcluster import STORAGE_CLASS


def claim(name: str, size: str = "1Gi", **spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec},
    }


async def _bound(client: Client, name: str, ns: str) -> dict | None:
    c = await client.get_or_none(r.PVCS, name, ns)
    return c if c and (c.get("status") or {}).get("phase") == "Bound" else None


async def test_a_resize_done_in_the_super_cluster_reaches_the_tenant_claim_and_volume(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """tidb-operator v1 shows "resizing" until the claim's status capacity grows; v2 waits on it."""
    t: TenantHandle = await tenant_factory("vol-resize")
    sns = f"{t.root}-default"
    # The shared class that allows expansion, which the tenant's own resize admission checks.
    await eventually(lambda: t.client.get_or_none(r.STORAGECLASSES, STORAGE_CLASS), what="class up")
    await t.client.create(r.PVCS, claim("data"), "default")
    tenant_claim = await eventually(lambda: _bound(t.client, "data", "default"), what="tenant claim Bound")
    super_claim = await eventually(lambda: _bound(super_client, "data", sns), what="super claim Bound")
    pv = super_claim["spec"]["volumeName"]
    assert tenant_claim["spec"]["volumeName"] == pv

    t.kubectl("patch", "pvc", "data", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}')

    async def requested() -> bool:
        c = await super_client.get(r.PVCS, "data", sns)
        return c["spec"]["resources"]["requests"]["storage"] == "2Gi"

    await eventually(requested, what="the larger request down")
    # The super cluster's resizer at work: a condition first, then the new size on claim and volume.
    resizing = {"type": "Resizing", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    await super_client.patch(
        r.PVCS,
        "data",
        {"status": {"conditions": [resizing], "allocatedResources": {"storage": "2Gi"}}},
        sns,
        subresource="status",
    )

    async def tenant_resizing() -> bool:
        st = (await t.client.get(r.PVCS, "data", "default"))["status"]
        return [c["type"] for c in st.get("conditions") or []] == ["Resizing"] and st.get(
            "allocatedResources"
        ) == {"storage": "2Gi"}

    await eventually(tenant_resizing, what="the Resizing condition up")
    await super_client.patch(r.PVS, pv, {"spec": {"capacity": {"storage": "2Gi"}}})
    done = {"status": {"conditions": None, "capacity": {"storage": "2Gi"}}}
    await super_client.patch(r.PVCS, "data", done, sns, subresource="status")

    async def tenant_resized() -> bool:
        st = (await t.client.get(r.PVCS, "data", "default"))["status"]
        vol = await t.client.get(r.PVS, pv)
        return (
            st["phase"] == "Bound"
            and st["capacity"] == {"storage": "2Gi"}
            and not st.get("conditions")
            and vol["spec"]["capacity"] == {"storage": "2Gi"}
        )

    await eventually(tenant_resized, what="the new size on the tenant claim and volume")


async def test_shared_attributes_classes_are_offered_and_claims_carry_them_down(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    gold = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttributesClass",
        "metadata": {"name": "gold", "labels": {naming.LABEL_PUBLIC: "true"}},
        "driverName": "rook-ceph.rbd.csi.ceph.com",
        "parameters": {"iops": "6000"},
    }
    await super_client.create(r.VOLUMEATTRIBUTESCLASSES, gold)
    try:
        t: TenantHandle = await tenant_factory("vol-vac")
        sns = f"{t.root}-default"
        copy = await eventually(
            lambda: t.client.get_or_none(r.VOLUMEATTRIBUTESCLASSES, "gold"), what="class in the tenant"
        )
        assert copy["parameters"] == {"iops": "6000"} and copy["driverName"] != gold["driverName"]
        await t.client.create(r.PVCS, claim("fast", volumeAttributesClassName="gold"), "default")

        async def carried() -> bool:
            c = await super_client.get_or_none(r.PVCS, "fast", sns)
            return c is not None and c["spec"].get("volumeAttributesClassName") == "gold"

        await eventually(carried, what="the claim's attributes class down")
        await t.client.create(r.PVCS, claim("odd", volumeAttributesClassName="platinum"), "default")

        await eventually(
            lambda: event(t.client, "default", "VolumeAttributesClassNotAllowed", "odd"),
            what="a class not shared is refused with an event",
        )
        assert await super_client.get_or_none(r.PVCS, "odd", sns) is None
    finally:
        await super_client.delete(r.VOLUMEATTRIBUTESCLASSES, "gold")


async def test_in_place_image_changes_of_sidecars_and_containers_reach_the_super_pod(
    syncer: SyncerProc, tenant_factory, super_client: Client
) -> None:
    """tidb-operator upgrades images in place; the rest of each container (env, ports) is kept."""
    t: TenantHandle = await tenant_factory("pod-images")
    sns = f"{t.root}-default"
    sidecar = {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}
    main = {"name": "main", "image": "busybox:1", "env": [{"name": "MODE", "value": "x"}]}
    await t.client.create(r.PODS, pod("up", initContainers=[sidecar], containers=[main]), "default")
    await eventually(lambda: super_client.get_or_none(r.PODS, "up", sns), what="super pod")
    patch = [
        {"op": "replace", "path": "/spec/initContainers/0/image", "value": "envoy:2"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:2"},
    ]
    t.kubectl("patch", "pod", "up", "--type=json", "-p", json.dumps(patch))

    async def images() -> dict | None:
        spec = (await super_client.get(r.PODS, "up", sns))["spec"]
        return spec if spec["initContainers"][0]["image"] == "envoy:2" else None

    spec = await eventually(images, what="new images on the super pod")
    assert spec["containers"][0]["image"] == "busybox:2"
    assert {"name": "MODE", "value": "x"} in spec["containers"][0]["env"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
