"""What `tispace up` runs: a super cluster (local or given) and TiSpace's own programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tispace import localcluster, procs


class StackError(RuntimeError):
    pass


class Stack:
    """Everything started from one state dir."""

    def __init__(
        self,
        state_dir: Path,
        *,
        super_kubeconfig: Path | None = None,
        nodes: localcluster.NodeSpec | None = None,
    ) -> None:
        self.dir = state_dir.resolve()
        self._config = self.dir / "stack.json"
        saved = json.loads(self._config.read_text()) if self._config.exists() else {}
        external = super_kubeconfig or (
            Path(saved["super_kubeconfig"]) if saved.get("super_kubeconfig") else None
        )
        self.external = external.resolve() if external else None
        self.nodes = nodes or localcluster.NodeSpec(count=saved.get("nodes", localcluster.NodeSpec().count))
        self.local = None if self.external else localcluster.SuperCluster(self.dir, self.nodes)
        self.own = procs.Registry(self.dir / "tispace-state.json")

    @property
    def super_kubeconfig(self) -> Path:
        return self.external or self.dir / "super.kubeconfig"

    def up(self, progress: localcluster.Progress) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            json.dumps(
                {"super_kubeconfig": str(self.external) if self.external else None, "nodes": self.nodes.count}
            )
        )
        if self.local:
            self.local.up(progress)
        else:
            progress(f"using the existing super cluster of {self.external}")
            try:
                localcluster.kubectl(self.super_kubeconfig, "get", "--raw=/readyz", timeout=15)
            except RuntimeError as e:
                raise StackError(f"the super cluster of {self.external} is not reachable: {e}") from e
            localcluster.apply(self.super_kubeconfig, localcluster.furniture())

    def down(self) -> None:
        for c in reversed(self.own.load()):
            procs.stop(c.proc)
        self.own.clear()
        if self.local:
            self.local.down()

    def status(self) -> list[dict[str, Any]]:
        rows = self.local.status() if self.local else []
        return rows + [c.status() for c in self.own.load()]

    def summary(self) -> list[str]:
        lines = [f"super cluster kubeconfig: {self.super_kubeconfig}"]
        lines.append(f"next: kubectl --kubeconfig {self.super_kubeconfig} get nodes")
        return lines
