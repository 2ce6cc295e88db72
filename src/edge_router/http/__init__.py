"""HTTP primitives, pure: the request as every stage sees it (`context`), path normalisation and
safety (`paths`), header decisions (`headers`), and the router's own answers (`responses`)."""
