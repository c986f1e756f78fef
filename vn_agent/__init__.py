"""vn_agent: the kubelet endpoint of every virtual node (logs, exec, attach, port-forward, pods, stats)."""
