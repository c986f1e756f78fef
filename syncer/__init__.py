"""syncer: mirrors every tenant's objects into the super cluster and status back up."""
