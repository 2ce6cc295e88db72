"""Guards: checks that may stop a request before any backend is contacted (CONTRACT section 8).

Two stages, in an order written once, in `config/compile_guards.py`:

1. before routing, every path (`RouterConfig.request_guards`): request framing and path safety
   (`framing`), the client address behind trusted proxies (`ip_rules.ClientAddressStage`), the
   top-level IP rules (`ip_rules`), the CORS preflight answer (`preflight`, with `cors`'s policy),
   the admin gate on /admin paths (`admin`);
2. after the route is matched (`Route.guards`, compiled per route, so a route without a guard pays
   nothing): the proxy-loop check (`loop`), the route's IP rules, origin checks (`cors`), size
   limits (`size_limits`), API key (`api_keys`, with `key_store`), rate limit (`rate_limit`, with
   `token_bucket`, `buckets` and `shared_buckets`).

A guard is a small class built once from config values and validated at construction (like
Starlette's middleware); `base.Guard` states its contract. What outlives a config (key and bucket
stores, the admin gate) comes from the router's `services.GuardServices`.
"""
