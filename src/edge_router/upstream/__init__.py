"""Upstreams: how a request reaches a backend (`base` states the contract); over HTTP/1.1 with
httptools (`http1`), or by Lambda Invoke for `lambda:` targets
(`lambda_invoke`)."""
