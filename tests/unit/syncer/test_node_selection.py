"""Which super nodes are a tenant's nodes from the start (VirtualCluster spec.nodes)."""

import pytest

from syncer.engine.tenant import spec_context
from syncer.resources import nodes
from syncer.resources.context import TenantContext
from tispace.naming import RootNamespace

NODE = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "zone-a", "disk": "ssd"}}}
CTX = TenantContext(root=RootNamespace("t-abcdef-dev"), vc_name="dev", vc_namespace="t")


@pytest.mark.parametrize(
    ("selector", "taken"),
    [
        (None, False),  # on demand: no node from the start
        ({}, True),  # all
        ({"matchLabels": {"disk": "ssd"}}, True),
        ({"matchLabels": {"disk": "hdd"}}, False),
        ({"matchLabels": {"gpu": "yes"}}, False),
        (
            {
                "matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]}
                ]
            },
            True,
        ),
        (
            {
                "matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-b"]}
                ]
            },
            False,
        ),
        ({"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["hdd"]}]}, True),
        ({"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["yes"]}]}, True),
        ({"matchExpressions": [{"key": "disk", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}, False),
        ({"matchExpressions": [{"key": "disk", "operator": "Near", "values": ["x"]}]}, False),
        (  # every term must hold
            {"matchLabels": {"disk": "ssd"}, "matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
            False,
        ),
    ],
)
def test_label_selectors_take_super_nodes_as_upstream_matches_them(
    selector: dict | None, taken: bool
) -> None:
    assert nodes.selects(selector, NODE) is taken


def test_a_node_without_labels_is_taken_by_all_and_by_absence_only() -> None:
    bare = {"metadata": {"name": "n2"}}
    assert nodes.selects({}, bare)
    assert nodes.selects({"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}, bare)
    assert not nodes.selects({"matchLabels": {"disk": "ssd"}}, bare)


@pytest.mark.parametrize(
    ("spec_nodes", "default", "want"),
    [
        (None, None, None),
        (None, {}, {}),  # the syncer's --nodes all
        ({}, {}, {}),
        ({"mode": "onDemand"}, {}, None),  # the tenant's choice wins
        ({"mode": "selector"}, None, {}),
        (
            {"mode": "selector", "selector": {"matchLabels": {"disk": "ssd"}}},
            None,
            {"matchLabels": {"disk": "ssd"}},
        ),
    ],
)
def test_the_virtualcluster_says_which_nodes_else_the_syncer_default(
    spec_nodes: dict | None, default: dict | None, want: dict | None
) -> None:
    assert nodes.selector_of(spec_nodes, default) == want
    spec = {} if spec_nodes is None else {"nodes": spec_nodes}
    assert spec_context(CTX, {"metadata": {}, "spec": spec}, default).node_selector == want
