"""vc_manager: turns VirtualCluster objects into private, working tenant control planes."""
