"""Routing: which route (`match`), which targets in which order (`candidates`, THE decision, with
`balancing`, `geo` and `fallback`'s rules), header routing over backend registries
(`header_routing`, `registry/`), and `explain`. Pure but for the registry adapters."""
