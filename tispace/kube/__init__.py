"""The client layer: the only code that talks HTTP to Kubernetes API servers."""
