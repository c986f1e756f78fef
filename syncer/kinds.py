"""The one table of synced kinds. A new kind is a row plus its pure functions (and hooks, if it has side
effects); the reconcile, the patrol, the informers and the reconciler tests pick it up from here."""

from __future__ import annotations

from syncer.engine import hooks, pods, up
from syncer.engine.model import Direction, SyncedKind
from syncer.resources import classes, services, simple, volumes
from syncer.resources import pods as pod_rules
from tispace import naming
from tispace.kube import resources as r

DOWN, UP, PUBLIC = Direction.DOWN, Direction.UP, Direction.PUBLIC


def _public(name: str, res: r.Resource, copy: classes.Copy) -> SyncedKind:
    return SyncedKind(
        name,
        res,
        PUBLIC,
        super_selector=naming.PUBLIC_SELECTOR,
        tenant_selector=naming.PUBLIC_SELECTOR,
        to_tenant=up.public_copy(copy),
        update_up=up.public_update(res),
        prune=True,
    )


KINDS: dict[str, SyncedKind] = {
    k.name: k
    for k in (
        SyncedKind(
            "Namespace",
            r.NAMESPACES,
            DOWN,
            to_super=simple.namespace_to_super,
            patch_down=simple.metadata_only_patch,
            hooks=hooks.NAMESPACE,
        ),
        SyncedKind(
            "ConfigMap",
            r.CONFIGMAPS,
            DOWN,
            to_super=simple.configmap_to_super,
            patch_down=simple.data_patch,
            super_name=simple.configmap_super_name,
        ),
        SyncedKind("Secret", r.SECRETS, DOWN, to_super=simple.secret_to_super, patch_down=simple.data_patch),
        SyncedKind(
            "ServiceAccount",
            r.SERVICEACCOUNTS,
            DOWN,
            to_super=simple.serviceaccount_to_super,
            patch_down=simple.data_patch,
            skip=simple.is_default_serviceaccount,
        ),
        SyncedKind(
            "Pod",
            r.PODS,
            DOWN,
            to_super=pod_rules.to_super,
            patch_down=pod_rules.patch_down,
            patch_type="strategic",
            graceful=True,
            status_up=pod_rules.status_patch,
            finished=pod_rules.finished,
            super_kept=pods.token_dropped,
            hooks=pods.HOOKS,
        ),
        SyncedKind(
            "Service",
            r.SERVICES,
            DOWN,
            to_super=services.service_to_super,
            patch_down=services.service_patch,
            status_up=services.load_balancer_up,
            skip=services.is_tenant_apiserver_service,
            hooks=hooks.SERVICE,
        ),
        SyncedKind(
            "PersistentVolumeClaim",
            r.PVCS,
            DOWN,
            to_super=volumes.claim_to_super,
            patch_down=volumes.claim_patch,
            status_up=volumes.claim_status_patch,
        ),
        SyncedKind(
            "Ingress",
            r.INGRESSES,
            DOWN,
            to_super=services.ingress_to_super,
            patch_down=simple.data_patch,
            status_up=services.load_balancer_up,
            opt_in=True,
        ),
        SyncedKind(
            "Endpoints",
            r.ENDPOINTS,
            DOWN,
            to_super=services.endpoints_to_super,
            patch_down=simple.data_patch,
            skip=services.is_controller_endpoints,
        ),
        SyncedKind(
            "Event",
            r.EVENTS,
            UP,
            super_selector="",
            tenant_watched=False,
            route=up.event_route,
            super_kept=up.event_kept,
            tenant_location=up.event_location,
            to_tenant=up.event_to_tenant,
            update_up=up.event_update,
        ),
        SyncedKind(
            "PersistentVolume",
            r.PVS,
            UP,
            super_selector="",
            route=up.pv_route,
            route_reads_old=True,
            to_tenant=up.pv_to_tenant,
            update_up=up.pv_update,
            prune=True,
            mine=volumes.is_synced_pv,
        ),
        SyncedKind(
            "Node",
            r.NODES,
            UP,
            super_selector="",
            route=up.node_route,
            to_tenant=up.node_to_tenant,
            update_up=up.node_update,
        ),
        _public("StorageClass", r.STORAGECLASSES, classes.storage_class),
        _public("VolumeAttributesClass", r.VOLUMEATTRIBUTESCLASSES, classes.volume_attributes_class),
        _public("PriorityClass", r.PRIORITYCLASSES, classes.priority_class),
        _public("RuntimeClass", r.RUNTIMECLASSES, classes.runtime_class),
        _public("IngressClass", r.INGRESSCLASSES, classes.ingress_class),
    )
}
DOWN_KINDS = [k for k in KINDS.values() if k.direction is DOWN]
PUBLIC_KINDS = [k for k in KINDS.values() if k.direction is PUBLIC]
