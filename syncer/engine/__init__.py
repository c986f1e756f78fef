"""The generic machinery: informers, the fair queue, the reconcile loop. Kind-agnostic."""
