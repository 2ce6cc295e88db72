"""The config formats, each compiled into the same `RouterConfig`: `routes` (the native list) and
`priority` (seed 003). `config/load.py` tells them apart by shape."""
