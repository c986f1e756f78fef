"""Tooling above the programs: the `tispace` CLI, the local stack, install on a real cluster, the bench.

The CLI is the one place that may start any program (vc_manager, syncer, vn_agent, portal); the
programs never import this package, and the shared core (`tispace`) imports none of them
(import-linter contracts in pyproject.toml).
"""
