#!/usr/bin/env bash
# Re-records the sample captures in datasets/samples/ with mcptape's own recorder and the official peers.
#
# Prerequisites: run scripts/test once (it installs .venv with the MCP Python SDK and mcp-server-time, and
# tests/peers/node_modules with @modelcontextprotocol/server-everything). The driving client is
# tests/peers/client.py (the official Python SDK, a fixed script); see datasets/samples/README.md.
#
# Usage: datasets/samples/record.sh [NAME...]   (NAME: everything-stdio everything-http time-2025 time-2026;
#                                                 default: all four)
# Uses target/debug/mcptape (built here with `cargo build`), or $MCPTAPE if set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"   # relative paths in commands, so captures do not hold this machine's folders
samples=datasets/samples
py=.venv/bin/python
everything=tests/peers/node_modules/.bin/mcp-server-everything
for need in "$py" "$everything"; do
  [ -x "$need" ] || { echo "record.sh: $need is missing; run scripts/test once first" >&2; exit 2; }
done
if [ -z "${MCPTAPE:-}" ]; then
  cargo build --quiet --bin mcptape
  MCPTAPE="${CARGO_TARGET_DIR:-$root/target}/debug/mcptape"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Moves the one segment the recorder wrote in $tmp/$1 to $samples/$1.parquet.
publish() {
  local segs=("$tmp/$1"/*.parquet)
  [ "${#segs[@]}" -eq 1 ] || { echo "record.sh: expected one segment in $tmp/$1, got ${#segs[@]}" >&2; exit 1; }
  install -m 0600 "${segs[0]}" "$samples/$1.parquet"
  "$MCPTAPE" dataset verify "$samples/$1.parquet" >&2
  echo "record.sh: wrote $samples/$1.parquet ($(stat -c %s "$samples/$1.parquet") bytes)" >&2
}

client() { "$py" tests/peers/client.py "$@" >/dev/null; }

rec_everything_stdio() {
  client -- "$MCPTAPE" record --out "$tmp/everything-stdio" --name everything-stdio -- "$everything" stdio
  publish everything-stdio
}

rec_everything_http() {
  local port log tap_pid srv_pid url
  port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  PORT="$port" "$everything" streamableHttp >"$tmp/server.log" 2>&1 &
  srv_pid=$!
  for _ in $(seq 100); do
    "$py" -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
    sleep 0.1
  done
  log="$tmp/tap.log"
  "$MCPTAPE" record --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$port/mcp" \
    --out "$tmp/everything-http" --name everything-http 2>"$log" &
  tap_pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
  url="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)/mcp"
  client --transport http --url "$url"
  kill -INT "$tap_pid"; wait "$tap_pid"
  kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true
  publish everything-http
}

rec_time() { # $1 = name, $2 = era
  client --server time --era "$2" -- "$MCPTAPE" record --out "$tmp/$1" --name "$1" -- \
    "$py" -m mcp_server_time --local-timezone UTC
  publish "$1"
}

names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(everything-stdio everything-http time-2025 time-2026)
for n in "${names[@]}"; do
  case "$n" in
    everything-stdio) rec_everything_stdio ;;
    everything-http) rec_everything_http ;;
    time-2025) rec_time time-2025 2025-11-25 ;;
    time-2026) rec_time time-2026 2026-07-28 ;;
    *) echo "record.sh: unknown sample $n" >&2; exit 2 ;;
  esac
done
