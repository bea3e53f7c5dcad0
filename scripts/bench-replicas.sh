#!/usr/bin/env bash
# Steady-state bench against server replicas on PostgreSQL (127.0.0.1:5432, trust auth): a fresh
# database `flotilla_bench`, REPLICAS servers on ports 18080.., `flotilla bench steady` with the
# simulated fleet spread over them, and the CPU of the servers and of PostgreSQL read from /proc
# over 120 s of the steady phase (the bench does not sample external servers).
#   cargo build --release && scripts/bench-replicas.sh REPLICAS CLUSTERS INTERVAL DURATION OUT_DIR
set -euo pipefail
replicas=$1 clusters=$2 interval=$3 duration=$4 dir=$5
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/flotilla
pkill -f "flotilla server --listen 127.0.0.1:1808" || true; sleep 1
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS flotilla_bench" -c "CREATE DATABASE flotilla_bench"
export FLOTILLA_STORE="postgres://postgres@127.0.0.1:5432/flotilla_bench"
rm -rf "$dir"; mkdir -p "$dir"
urls=()
for i in $(seq 0 $((replicas-1))); do
  port=$((18080+i))
  "$bin" server --listen 127.0.0.1:$port --data-dir "$dir"/r$i > "$dir"/r$i.log 2>&1 &
  sleep 2
  urls+=("http://127.0.0.1:$port")
done
token=$(cat "$dir"/r0/admin-token)
servers=$(IFS=,; echo "${urls[*]}")
ticks() { local t=0; for p in "$@"; do read -r -a f < /proc/$p/stat; t=$((t + f[13] + f[14])); done; echo $t; }
spids=$(pgrep -f "flotilla server --listen 127.0.0.1:1808" | tr '\n' ' ')
"$bin" bench steady --server "$servers" --token "$token" --clusters $clusters --interval $interval --duration $duration --out "$dir"/bench --no-progress > "$dir"/bench.log 2>&1 &
bench=$!
# Sample CPU over the steady phase only.
until grep -q "bench: steady" "$dir"/bench.log; do sleep 1; done
sleep 20
ppids=$(pgrep -u postgres postgres | tr '\n' ' ')
s0=$(ticks $spids); p0=$(ticks $ppids); t0=$(date +%s.%N)
for p in $spids; do echo "server $p $(ticks $p)"; done > "$dir"/cpu0
sleep 120
s1=$(ticks $spids); p1=$(ticks $(pgrep -u postgres postgres | tr '\n' ' ') ) || true; t1=$(date +%s.%N)
for p in $spids; do echo "server $p $(ticks $p)"; done > "$dir"/cpu1
rss=$(for p in $spids; do awk '/VmRSS/ {print $2}' /proc/$p/status; done | tr '\n' ' ')
python3 - "$s0" "$s1" "$p0" "$p1" "$t0" "$t1" "$rss" <<'PY' > "$dir"/cpu.txt
import sys
s0,s1,p0,p1=map(int,sys.argv[1:5]); t0,t1=map(float,sys.argv[5:7])
el=t1-t0
print(f"servers {(s1-s0)/100/el:.3f} cores, postgres {(p1-p0)/100/el:.3f} cores over {el:.0f} s; server RSS KiB {sys.argv[7]}")
PY
wait $bench || true
cat "$dir"/cpu.txt
tail -4 "$dir"/bench.log
for i in $(seq 0 $((replicas-1))); do curl -s http://127.0.0.1:$((18080+i))/metrics | grep -E "^flotilla_(store_follow_changes_total|singleton_lease_held|soft_state_writes_total|store_batches_total) " | sed "s/^/r$i /"; done
pkill -f "flotilla server --listen 127.0.0.1:1808" || true
