#!/usr/bin/env bash
# Measures how long a change acknowledged by one replica takes to be served by another: applies
# a ClusterGroup N times on replica A and polls replica B until it serves that revision.
#   scripts/replica-delay.sh http://127.0.0.1:18080 http://127.0.0.1:18081 ADMIN_TOKEN [N]
# Prints each delay in milliseconds, then min / p50 / p90 / max.
set -euo pipefail
a=$1 b=$2 token=$3 n=${4:-50}
auth=(-H "authorization: Bearer $token")
delays=()
for i in $(seq 1 "$n"); do
  doc="{\"apiVersion\":\"flotilla.dev/v1alpha1\",\"kind\":\"ClusterGroup\",\"metadata\":{\"name\":\"delay-probe\"},\"spec\":{\"selector\":{\"matchLabels\":{\"probe\":\"$i\"}}}}"
  start=$(date +%s%N)
  version=$(curl -sf "${auth[@]}" -H 'content-type: application/json' -d "$doc" "$a/api/v1/apply" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
  while :; do
    seen=$(curl -s "${auth[@]}" "$b/api/v1/clustergroups/delay-probe" |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("metadata",{}).get("resourceVersion",""))' 2>/dev/null || true)
    [[ "$seen" == "$version" ]] && break
    sleep 0.005
  done
  delay=$((($(date +%s%N) - start) / 1000000))
  delays+=("$delay")
  echo "$delay"
done
printf '%s\n' "${delays[@]}" | sort -n | awk '{v[NR]=$1} END {printf "min %d ms, p50 %d ms, p90 %d ms, max %d ms (n=%d, each including the apply round trip)\n", v[1], v[int(NR*0.5+0.5)], v[int(NR*0.9+0.5)], v[NR], NR}'
