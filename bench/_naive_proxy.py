"""The "naive" baseline: a FastAPI catch-all route forwarding with one shared httpx.AsyncClient.

This is what a proxy looks like when written the obvious way. Run under uvicorn (uvloop +
httptools, no access log, no Server/Date header, one process), like the reference rows (_floor.py):

    NAIVE_UPSTREAM=http://127.0.0.1:PORT python bench/_naive_proxy.py --port N
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

UPSTREAM = os.environ.get("NAIVE_UPSTREAM", "http://127.0.0.1:8000")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}

client: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global client
    client = httpx.AsyncClient(base_url=UPSTREAM)
    try:
        yield
    finally:
        await client.aclose()


app = FastAPI(lifespan=lifespan)


@app.api_route("/bench{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def forward(rest: str, request: Request) -> Response:
    assert client is not None
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    upstream = await client.request(
        request.method,
        rest or "/",
        params=request.query_params,
        headers=headers,
        content=await request.body(),
    )
    out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    return Response(content=upstream.content, status_code=upstream.status_code, headers=out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
