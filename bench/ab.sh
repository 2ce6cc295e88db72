#!/usr/bin/env bash
# A/B of this tree against another (a parent commit), interleaved in one run, as each issue reports:
#   git worktree add /tmp/parent <rev> && bench/ab.sh /tmp/parent/src
# Lambda: warm invoke p50 and CPU (3 rounds x 3000 invokes each side, bench/_ab_lambda.py);
# server: `edge-router serve` req/s at c=32 (wrk -t2, 5 s) on an uncached and a cached route, and
# p50 at c=1, 3 rounds. Needs wrk. Loopback only; everything it starts is stopped at the end.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="$ROOT/.venv/bin/python"
OTHER="${1:?usage: bench/ab.sh OTHER_TREE/src}"
OUT="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
(cd "$HERE" && exec "$PY" _backend.py --port 0 > "$OUT/backend" 2>&1) &
for _ in $(seq 50); do grep -q PORT "$OUT/backend" 2>/dev/null && break; sleep 0.1; done
PORT=$(grep -o '[0-9]*' "$OUT/backend" | head -1)
side() { if [ "$1" = new ]; then echo "$ROOT/src"; else echo "$OTHER"; fi; }

echo "Lambda warm invoke (p50 / CPU per invoke)"
for round in 1 2 3; do
  for v in new other; do
    echo "  $round $v $(PYTHONPATH=$(side $v) "$PY" "$HERE/_ab_lambda.py" "$PORT" 3000 2>/dev/null)"
  done
done

cat > "$OUT/routes.json" <<J
{"routes": [{"prefix": "/api", "target": "http://127.0.0.1:$PORT"},
            {"prefix": "/cached", "target": "http://127.0.0.1:$PORT", "cache": {"enabled": true, "ttl": 300}}]}
J
rps() { wrk -t2 -c32 -d5s "$1" | awk '/Requests\/sec/{print $2}'; }
echo "Server (req/s at c=32; p50 at c=1)"
for round in 1 2 3; do
  for v in new other; do
    P=$((18000 + RANDOM % 1000))
    PYTHONPATH=$(side $v) "$PY" -m edge_router.cli serve --config "$OUT/routes.json" --port $P >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$P/api/x" && break; sleep 0.2; done
    wrk -t2 -c32 -d1s "http://127.0.0.1:$P/api/x" >/dev/null
    u=$(rps "http://127.0.0.1:$P/api/x"); c=$(rps "http://127.0.0.1:$P/cached/x")
    p=$(wrk -t1 -c1 -d3s --latency "http://127.0.0.1:$P/api/x" | awk '/ 50%/{print $2}')
    echo "  $round $v uncached=$u cached=$c p50_c1=$p"
    kill $pid; wait $pid 2>/dev/null || true
  done
done
