#!/usr/bin/env bash
# Build k8scheck (strict Kubernetes manifest checks, see main.go) and fetch the
# OpenTelemetry Operator's Instrumentation CRD it checks against, cached under
#   ${OTEL_ASGI_KIT_CACHE:-$HOME/.cache/otel-asgi-kit}/k8scheck/<source hash>/{k8scheck,crds/}
# Modules come from the Go module proxy into the same Go caches as
# collector/build.sh. The last stdout line is the binary's path; the CRDs are
# in crds/ beside it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${OTEL_ASGI_KIT_CACHE:-$HOME/.cache/otel-asgi-kit}"
# The operator release whose CRD the Instrumentation is checked against (its
# module is served at exact versions only: the proxy lists none).
operator_version="v0.140.0"

hash="$( (cd "$here" && cat go.mod go.sum ./*.go; echo "$operator_version") | sha256sum | cut -c1-12)"
out_dir="$cache/k8scheck/$hash"
bin="$out_dir/k8scheck"
if [[ -x "$bin" && -d "$out_dir/crds" ]]; then
  echo "$bin"
  exit 0
fi

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local

mkdir -p "$out_dir"
exec 9>"$out_dir/.build.lock"
flock 9
if [[ -x "$bin" && -d "$out_dir/crds" ]]; then
  echo "$bin"
  exit 0
fi

echo "build.sh: building k8scheck (1-2 CPU minutes on a cold cache)" >&2
(cd "$here" && go build -o "$out_dir/.k8scheck.tmp" .) >&2
operator_dir="$(cd "$out_dir" && go mod download -json "github.com/open-telemetry/opentelemetry-operator@$operator_version" \
  | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
if [[ ! -f "$operator_dir/config/crd/bases/opentelemetry.io_instrumentations.yaml" ]]; then
  echo "build.sh: no Instrumentation CRD in opentelemetry-operator@$operator_version ($operator_dir)" >&2
  exit 1
fi
mkdir -p "$out_dir/crds.tmp"
cp "$operator_dir/config/crd/bases/opentelemetry.io_instrumentations.yaml" "$out_dir/crds.tmp/"
rm -rf "$out_dir/crds"
mv "$out_dir/crds.tmp" "$out_dir/crds"
mv -f "$out_dir/.k8scheck.tmp" "$bin"
echo "$bin"
