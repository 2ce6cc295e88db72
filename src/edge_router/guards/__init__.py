"""Guards: checks that may stop a request before any backend is contacted (CONTRACT section 8).

Two stages, in this order (written here once; `config/compile.py` builds them in it):

1. before routing (`RouterConfig.request_guards`, and the app's own): request framing and path
   safety (`framing`), the CORS preflight answer (`preflight`), the admin gate on /admin paths
   (`admin`); later IP rules and URL length;
2. after the route is matched (`Route.guards`, compiled per route, so a route without a guard pays
   nothing): the proxy-loop check (`loop`); later origin checks, size limits, API key, rate limit.

A guard is a small class built once from config values and validated at construction (like
Starlette's middleware); `base.Guard` states its contract.
"""
