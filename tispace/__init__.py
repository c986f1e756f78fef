"""TiSpace shared core: naming, PKI, client layer, local control planes, CLI."""
