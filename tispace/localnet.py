"""How tenant control planes reach virtual nodes in the local embedded mode (see vn_agent/egress.py).

kube-apiserver proxies to nodes only at global-unicast addresses; locally everything listens on
loopback. Virtual nodes therefore advertise a documentation address, and tenant API servers send
their node traffic through vn_agent's CONNECT proxy, which ends tunnels to that address at vn_agent.
"""

from __future__ import annotations

VIRTUAL_ADDRESS = "203.0.113.1"
"""RFC 5737 TEST-NET-3: globally unicast in form, routed nowhere."""


def egress_config(socket: str) -> str:
    """kube-apiserver's EgressSelectorConfiguration: `cluster` traffic through the proxy on a Unix
    socket (HTTP CONNECT over TCP would need TLS: kube-apiserver 1.36 crashes on a plain-HTTP URL)."""
    return f"""\
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: {socket}
"""
