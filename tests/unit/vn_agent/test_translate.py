"""vn_agent's route and query tables."""

import pytest

from tispace import naming
from tispace.naming import RootNamespace
from vn_agent import translate

ROOT = RootNamespace("team-abcdef-dev")


def test_logs_query_is_translated_parameter_by_parameter() -> None:
    t = translate.translate("/containerLogs/db/web-0/main?follow=true&tailLines=10&timestamps=true", ROOT)
    assert t.route.name == "containerLogs" and not t.route.streaming
    assert (t.tenant_namespace, t.pod, t.container, t.super_namespace) == (
        "db",
        "web-0",
        "main",
        "team-abcdef-dev-db",
    )
    assert t.path == (
        "/api/v1/namespaces/team-abcdef-dev-db/pods/web-0/log"
        "?follow=true&tailLines=10&timestamps=true&container=main"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("command=ls&command=-l&input=1&output=1&tty=1", "command=ls&command=-l&stdin=1&stdout=1&tty=1"),
        (
            "command=ls&output=1&error=1&tty=0",
            "command=ls&stdout=1&stderr=1&tty=0",
        ),  # tty=0 stays tty, never stdout
    ],
)
def test_exec_query_table(query: str, expected: str) -> None:
    t = translate.translate(f"/exec/db/web-0/main?{query}", ROOT)
    assert t.route.streaming
    assert t.path == f"/api/v1/namespaces/team-abcdef-dev-db/pods/web-0/exec?{expected}&container=main"


def test_attach_has_no_command() -> None:
    with pytest.raises(translate.BadRequest) as err:
        translate.translate("/attach/db/web-0/main?command=sh", ROOT)
    assert err.value.status == 400
    assert translate.translate("/attach/db/web-0/main?input=1", ROOT).path.endswith(
        "/attach?stdin=1&container=main"
    )


def test_port_forward() -> None:
    t = translate.translate("/portForward/db/web-0?port=8080", ROOT)
    assert t.path == "/api/v1/namespaces/team-abcdef-dev-db/pods/web-0/portforward?ports=8080"
    assert t.container == ""


@pytest.mark.parametrize(
    "path",
    [
        "/configz",
        "/containerLogs/db/web-0",
        "/exec/../../etc/passwd/x",
        "/containerLogs/DB/web-0/main",
        "/run/db/web-0/main/extra",
    ],
)
def test_paths_outside_the_table_are_404(path: str) -> None:
    with pytest.raises(translate.BadRequest) as err:
        translate.translate(path, ROOT)
    assert err.value.status == 404


def test_unknown_query_parameter_is_400() -> None:
    with pytest.raises(translate.BadRequest, match="'namespace' is not supported"):
        translate.translate("/containerLogs/db/web-0/main?namespace=kube-system", ROOT)


def test_run_becomes_an_exec_of_the_super_pod() -> None:
    t = translate.translate("/run/db/web-0/main?cmd=ls%20-l", ROOT)
    assert t.route.name == "run" and not t.route.streaming
    assert t.super_namespace == naming.super_namespace(ROOT, naming.TenantNamespace("db"))
    assert t.path.endswith("/pods/web-0/exec?command=ls+-l&container=main")


def test_direct_mode_keeps_the_kubelet_request_with_the_super_namespace() -> None:
    sns = naming.super_namespace(ROOT, naming.TenantNamespace("db"))
    t = translate.translate("/exec/db/web-0/main?command=sh&input=1&output=1&tty=1", ROOT)
    assert t.kubelet_path == f"/exec/{sns}/web-0/main?command=sh&input=1&output=1&tty=1"
    assert translate.translate("/portForward/db/web-0", ROOT).kubelet_path == f"/portForward/{sns}/web-0"
