"""The self-service portal: developers log in with the company's OIDC provider and manage their own
virtual clusters and dev instances in a browser."""
