#!/usr/bin/env bash
# cpu-per-request.sh BIN [ENV=VALUE ...]
#
# The proxy CPU (user + system, from /proc/PID/stat) per 1 MiB POST of one
# vkp build: starts a bench origin on 127.0.0.1:19001 if none runs, starts
# BIN on 127.0.0.1:19002 in front of it, sends 1000 unmeasured then 4000
# measured POSTs over 32 connections, prints microseconds per request. Run
# it for two builds in alternation (A B A B) to compare them: the machine's
# speed moves between runs more than between neighbouring ones.
set -euo pipefail
BIN=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'kill $vkp 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/bench" "$here/bench"
if ! (exec 3<>/dev/tcp/127.0.0.1/19001) 2>/dev/null; then
  "$tmp/bench" origin --listen 127.0.0.1:19001 --size 128 >/dev/null 2>&1 &
  sleep 0.3
fi
cat > "$tmp/cfg.json" <<CFG
{"ReverseProxy": {"Routes": {"r": {"ClusterId": "c", "Match": {"Hosts": ["*"], "Paths": ["*"]}}},
  "Clusters": {"c": {"Destinations": [{"Address": "http://127.0.0.1:19001"}]}}}}
CFG
env "$@" "$BIN" serve --config "$tmp/cfg.json" --listen 127.0.0.1:19002 >/dev/null 2>&1 &
vkp=$!
sleep 0.5
load() { "$tmp/bench" load --addr 127.0.0.1:19002 --path /bench --method POST --body-size 1048576 --conns 32 --duration 30s --max-requests "$1" --timeout 20s; }
load 1000 >/dev/null
a=$(awk '{print $14+$15}' /proc/$vkp/stat)
out=$(load 4000 | grep '^mode')
b=$(awk '{print $14+$15}' /proc/$vkp/stat)
ticks=$(getconf CLK_TCK)
echo "$BIN $*: $(( (b-a) * 1000000 / ticks / 4000 )) us/req; $out"
