"""Resilience: memory of backend health and circuit breakers (CONTRACT section 7), consulted by
`routing.candidates` and fed by each attempt's outcome. Filled by the next issue."""
