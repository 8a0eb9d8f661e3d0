#!/usr/bin/env bash
# Runs the public HTTP caching test suite (github.com/http-tests/cache-tests,
# the one behind cache-tests.fyi) against vkp as a shared cache, or nginx
# for comparison.
#
#   bench/conformance/run.sh SUITE_DIR [memory|disk|redis|nginx] [OUT.json]
#
# SUITE_DIR is a checkout of the suite with its dependencies installed
# (git clone https://github.com/http-tests/cache-tests; cd cache-tests;
# npm install). The suite's origin runs on 127.0.0.1:8000, the cache under
# test on 127.0.0.1:8002 in front of it; redis-server and nginx, when used,
# are started here and stopped at the end. Takes about a minute.
set -euo pipefail
SUITE="$(cd "${1:?usage: run.sh SUITE_DIR [memory|disk|redis|nginx] [OUT.json]}" && pwd)"
TARGET="${2:-memory}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$(mktemp -d /tmp/vkp-conformance.XXXXXX)"
OUT="${3:-$WORK/results.json}"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
[ -f "$SUITE/test-engine/cli.mjs" ] || { echo "$SUITE is not a cache-tests checkout" >&2; exit 2; }

up() { # wait until 127.0.0.1:$1 accepts connections
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}

ORIGIN_PIDFILE="$WORK/origin.pid" timeout 600 node "$HERE/origin.mjs" "$SUITE" >"$WORK/origin.log" 2>&1 &
pids+=($!)
up 8000

case "$TARGET" in
nginx)
  mkdir -p "$WORK/nginx"
  user=""
  [ "$(id -u)" = 0 ] && user="user root root;" # workers must reach $WORK
  cat >"$WORK/nginx.conf" <<CONF
$user
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  # As the suite's own docker/nginx config.
  proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=c:8m max_size=1000m inactive=600m;
  server {
    listen 127.0.0.1:8002;
    location / {
      proxy_pass http://127.0.0.1:8000;
      proxy_cache c;
      proxy_cache_revalidate on;
      proxy_http_version 1.1;
    }
  }
}
CONF
  timeout 600 nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" >"$WORK/target.log" 2>&1 &
  pids+=($!)
  ;;
memory|disk|redis)
  (cd "$ROOT" && go build -o "$WORK/vkp" .)
  store="$(tr '[:lower:]' '[:upper:]' <<<"${TARGET:0:1}")${TARGET:1}"
  cat >"$WORK/vkp.json" <<CONF
{"ReverseProxy": {
  "Routes": {"all": {"ClusterId": "origin", "Match": {"Paths": ["*"]}, "Metadata": {"Cache": "$store"}}},
  "Clusters": {"origin": {"Destinations": [{"Address": "http://127.0.0.1:8000"}]}}}}
CONF
  args=(serve -c "$WORK/vkp.json" -l 127.0.0.1:8002 --log-level warn --disk-cache "$WORK/disk")
  if [ "$TARGET" = redis ]; then
    port=6390
    timeout 600 redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null 2>&1 &
    pids+=($!)
    up $port
    args+=(--redis 127.0.0.1:$port)
  fi
  timeout 600 "$WORK/vkp" "${args[@]}" >"$WORK/target.log" 2>&1 &
  pids+=($!)
  ;;
*) echo "target: memory, disk, redis or nginx" >&2; exit 2 ;;
esac
up 8002

preload=()
if [ -d "$SUITE/node_modules/undici" ]; then
  export SUITE_UNDICI="$SUITE/node_modules/undici/index.js"
  preload=(--import "$HERE/undici.mjs")
fi
(cd "$SUITE" && npm_config_base=http://127.0.0.1:8002 npm_package_config_id='' \
  timeout 420 node --no-warnings "${preload[@]}" test-engine/cli.mjs >"$OUT")
echo "$TARGET: results in $OUT"
node "$HERE/summarize.mjs" "$SUITE" "$OUT"
