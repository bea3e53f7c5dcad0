#!/usr/bin/env bash
# Git sources under load: a repository of N folders (a fleet.yaml and 5 ConfigMaps each), one
# GitRepo, a GitLab push webhook per commit; prints webhook-to-status times and the server log.
# Usage: scripts/bench-git-sources.sh [N]   (after cargo build --release; needs git, curl, python3)
set -euo pipefail
N=${1:-200}
BIN=${FLOTILLA_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/flotilla}
W=$(mktemp -d /tmp/flotilla-git-bench.XXXXXX)
export GIT_CONFIG_NOSYSTEM=1 HOME=$W/home; mkdir -p $HOME
git config --global user.email t@t; git config --global user.name t; git config --global init.defaultBranch main
git init -q --bare $W/repo.git; git clone -q $W/repo.git $W/work 2>/dev/null
cd $W/work
for i in $(seq -w 1 $N); do
  mkdir -p apps/app-$i
  echo "defaultNamespace: app-$i" > apps/app-$i/fleet.yaml
  for j in 1 2 3 4 5; do
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%s\ndata:\n  app: "%s"\n  cluster: ${cluster.name}\n' $j $i > apps/app-$i/cm-$j.yaml
  done
done
git add -A; git commit -qm init; git push -q origin main
FLOTILLA_LOG=info,flotilla_server::gitops=debug $BIN server --listen 127.0.0.1:18080 --data-dir $W/data > $W/server.log 2>&1 &
SERVER=$!
trap "kill $SERVER; rm -rf $W" EXIT
for _ in $(seq 100); do [ -s $W/data/admin-token ] && break; sleep 0.1; done
export FLOTILLA_SERVER=http://127.0.0.1:18080 FLOTILLA_TOKEN=$(cat $W/data/admin-token)
sleep 0.5
printf 'apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {name: git-webhook}\nspec: {type: webhook, stringData: {gitlab: tok}}\n' | $BIN apply -f - >/dev/null
HEAD1=$(git rev-parse HEAD)
wait_commit() { local want=$1; local t0=$2; while true; do c=$($BIN get gitrepo scale -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"].get("commit",""))'); [ "$c" = "$want" ] && break; sleep 0.02; done; python3 -c "import time; print(f'{time.time()-$t0:.2f}')"; }
T0=$(python3 -c 'import time; print(time.time())')
printf "apiVersion: flotilla.dev/v1alpha1\nkind: GitRepo\nmetadata: {name: scale}\nspec:\n  repo: file://$W/repo.git\n  paths: [apps]\n  pollInterval: 1h\n  targets: [{clusterSelector: {}}]\n" | $BIN apply -f - >/dev/null
echo "first render of $N folders ($((N*5)) manifests): $(wait_commit $HEAD1 $T0) s to status.commit"
echo "bundles: $($BIN get bundles -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
# one folder changes; webhook
F=$(cd apps && echo app-* | cut -d" " -f1); sed -i "s/app: /app: v2-/" apps/$F/cm-1.yaml; git commit -qam change; git push -q origin main
HEAD2=$(git rev-parse HEAD)
T0=$(python3 -c 'import time; print(time.time())')
curl -s -o /dev/null -X POST -H 'X-Gitlab-Event: Push Hook' -H 'X-Gitlab-Token: tok' -H 'content-type: application/json' \
  -d "{\"ref\":\"refs/heads/main\",\"project\":{\"git_http_url\":\"file://$W/repo.git\"}}" $FLOTILLA_SERVER/api/v1/webhooks/git
echo "one folder changed, webhook to status.commit: $(wait_commit $HEAD2 $T0) s"
# nothing rendered changes
echo "# docs" > README.md; git add -A; git commit -qm docs; git push -q origin main
HEAD3=$(git rev-parse HEAD)
T0=$(python3 -c 'import time; print(time.time())')
curl -s -o /dev/null -X POST -H 'X-Gitlab-Event: Push Hook' -H 'X-Gitlab-Token: tok' -H 'content-type: application/json' \
  -d "{\"ref\":\"refs/heads/main\",\"project\":{\"git_http_url\":\"file://$W/repo.git\"}}" $FLOTILLA_SERVER/api/v1/webhooks/git
echo "docs-only commit, webhook to status.commit: $(wait_commit $HEAD3 $T0) s"
grep -E "webhook push|git source" $W/server.log | sed "s/\x1b\[[0-9;]*m//g"
echo "server RSS: $(grep VmRSS /proc/$SERVER/status)"
