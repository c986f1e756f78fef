"""Kubelet request -> super API server request: a route table and a query table. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from tispace import naming
from tispace.naming import RootNamespace, TenantNamespace


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    subresource: str
    """Pod subresource of the super API server this kubelet path maps to ('' = served locally)."""
    query: dict[str, str]
    """Kubelet query parameter -> API server query parameter; anything else is refused."""
    streaming: bool = False


_SEG = r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?)"
_EXEC_QUERY = {"command": "command", "input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty"}
ROUTES = (
    Route(
        "containerLogs",
        re.compile(rf"^/containerLogs/{_SEG}/{_SEG}/{_SEG}$"),
        "log",
        {
            "follow": "follow",
            "tailLines": "tailLines",
            "sinceSeconds": "sinceSeconds",
            "sinceTime": "sinceTime",
            "timestamps": "timestamps",
            "previous": "previous",
            "limitBytes": "limitBytes",
        },
    ),
    Route("exec", re.compile(rf"^/exec/{_SEG}/{_SEG}/{_SEG}$"), "exec", _EXEC_QUERY, streaming=True),
    Route(
        "attach",
        re.compile(rf"^/attach/{_SEG}/{_SEG}/{_SEG}$"),
        "attach",
        {k: v for k, v in _EXEC_QUERY.items() if k != "command"},
        streaming=True,
    ),
    Route("run", re.compile(rf"^/run/{_SEG}/{_SEG}/{_SEG}$"), "exec", {"cmd": "command"}),
    Route(
        "portForward",
        re.compile(rf"^/portForward/{_SEG}/{_SEG}$"),
        "portforward",
        {"port": "ports", "ports": "ports"},
        streaming=True,
    ),
)


@dataclass(frozen=True)
class Target:
    route: Route
    tenant_namespace: str
    pod: str
    container: str
    super_namespace: str
    path: str
    """Path and query on the super API server."""
    kubelet_path: str
    """Path and query on the super node's kubelet (direct mode): the same request, super namespace."""


def translate(path_qs: str, root: RootNamespace) -> Target:
    """Map a kubelet request of tenant `root` to the super API server; BadRequest if it cannot be."""
    path, _, qs = path_qs.partition("?")
    for route in ROUTES:
        m = route.pattern.match(path)
        if m is None:
            continue
        groups = [g for i, g in enumerate(m.groups()) if i % 2 == 0]
        ns, pod = groups[0], groups[1]
        container = groups[2] if len(groups) > 2 else ""
        params: list[tuple[str, str]] = []
        for key, value in parse_qsl(qs, keep_blank_values=True, strict_parsing=False):
            if key not in route.query:
                raise BadRequest(400, f"query parameter {key!r} is not supported on {route.name}")
            params.append((route.query[key], value))
        if container:
            params.append(("container", container))
        sns = naming.super_namespace(root, TenantNamespace(ns))
        super_path = f"/api/v1/namespaces/{sns}/pods/{pod}/{route.subresource}"
        if params:
            super_path += "?" + urlencode(params)
        kubelet_path = "/".join(["", route.name, sns, pod, *([container] if container else [])])
        if qs:
            kubelet_path += "?" + qs
        return Target(route, ns, pod, container, sns, super_path, kubelet_path)
    raise BadRequest(404, f"path {path!r} is not served by vn_agent")
