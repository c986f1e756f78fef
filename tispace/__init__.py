"""TiSpace shared core, library code only: naming, PKI, kubeconfigs, the client layer, leases,
the API schema, RBAC rules, processes, logs, asyncio helpers."""
