"""Tools for people, never run in production by either party: the `psi` CLI, the demo,
synthetic data, the development CA, an authority's key and token issuing, and evaluation
against known truth."""
