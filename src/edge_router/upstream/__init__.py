"""Upstreams: how a request reaches a backend (`base` states the contract); over HTTP with aiohttp
(`aiohttp`), or by Lambda Invoke for `lambda:` targets (`lambda_invoke`)."""
