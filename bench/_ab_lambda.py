"""One side of the Lambda warm-invoke A/B (`ab.sh`): N warm invocations of the handler of whichever
edge_router is on PYTHONPATH, proxying GETs to the backend on PORT; prints p50 and CPU per invoke.

    PYTHONPATH=SRC python bench/_ab_lambda.py PORT [N]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as config:
        json.dump({"routes": [{"prefix": "/api", "target": f"http://127.0.0.1:{port}"}]}, config)
    from edge_router.aws_lambda import build_handler
    from edge_router.settings import Settings
    from edge_router.testing import function_url_event

    handler = build_handler(Settings.from_env({}, config_source=config.name))
    event = function_url_event("GET", "/api/bench")
    saved = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the request lines, as a log shipper takes them
    for _ in range(500):
        assert handler(event, None)["statusCode"] == 200
    times = []
    cpu = time.process_time()
    for _ in range(count):
        start = time.perf_counter()
        handler(event, None)
        times.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu) / count
    os.dup2(saved, 1)
    os.unlink(config.name)
    print(json.dumps({"p50_us": round(statistics.median(times) * 1e6, 1), "cpu_us": round(cpu * 1e6, 1)}))


if __name__ == "__main__":
    main()
