#!/usr/bin/env bash
# Times the server's start-up load of an existing data dir (e.g. the `server-data` a
# `flotilla bench` run leaves in its --out dir): copies it, starts a release server on the copy,
# prints the "fleet loaded" log line (clusters, elapsed_ms) and the server's RSS once it listens,
# then stops it. Usage: scripts/time-startup.sh DATA_DIR [BINARY]
set -euo pipefail
source_dir=${1:?usage: scripts/time-startup.sh DATA_DIR [BINARY]}
binary=${2:-target/release/flotilla}
scratch=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT
cp -r "$source_dir" "$scratch/data"
sync
"$binary" server --data-dir "$scratch/data" --listen 127.0.0.1:0 >"$scratch/log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
  grep -q "listening" "$scratch/log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$scratch/log"; exit 1; }
  sleep 0.25
done
grep -o 'fleet loaded.*' "$scratch/log"
echo "rss_mib=$(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 ))"
