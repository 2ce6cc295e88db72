"""One cold start, in this fresh process: import + build handler + first invocation.

    python bench/_cold.py router  --config FILE --result OUT.json   # proxies GET /bench to the backend
    python bench/_cold.py fastapi --result OUT.json                 # FastAPI "hello" under Mangum
    python bench/_cold.py bare    --result OUT.json                 # nothing: the interpreter's own cost

Only the standard library is imported before the clock starts. Run it with stdout sent to
/dev/null (the router logs its request there). Writes import_ms, build_ms, invoke_ms, total_ms,
status and peak RSS (ru_maxrss, KiB) to --result.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _common import function_url_event


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["router", "fastapi", "bare"])
    parser.add_argument("--config")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    event = function_url_event("GET", "/bench")

    t0 = time.perf_counter()
    status: Any = None
    if args.mode == "router":
        from edge_router.aws_lambda import build_handler
        from edge_router.settings import Settings

        t1 = time.perf_counter()
        handler = build_handler(Settings.from_env({}, config_source=args.config))
        t2 = time.perf_counter()
        status = handler(event, None)["statusCode"]
        t3 = time.perf_counter()
    elif args.mode == "fastapi":
        from fastapi import FastAPI
        from mangum import Mangum

        t1 = time.perf_counter()
        app = FastAPI()

        @app.get("/bench")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        mangum = Mangum(app, lifespan="off")
        t2 = time.perf_counter()
        status = mangum(event, None)["statusCode"]  # type: ignore[arg-type]  # no Lambda context here
        t3 = time.perf_counter()
    else:
        t1 = t2 = t3 = time.perf_counter()

    result = {
        "mode": args.mode,
        "status": status,
        "import_ms": (t1 - t0) * 1000,
        "build_ms": (t2 - t1) * 1000,
        "invoke_ms": (t3 - t2) * 1000,
        "total_ms": (t3 - t0) * 1000,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
