#!/usr/bin/env bash
# Build the otelcol-kit collector from builder-config.yaml (or the OCB manifest
# given as the only argument, e.g. collector/cloudwatch/builder-config.yaml)
# with the OpenTelemetry Collector Builder (OCB) and cache the binary under
#   ${OTEL_ASGI_KIT_CACHE:-$HOME/.cache/otel-asgi-kit}/collector/<version>-<manifest hash>/<dist.name>
# A manifest's dist.output_path must be ./otelcol-kit-src.
# A cached binary is reused as is. Progress goes to stderr; the last stdout
# line is the binary's path, so callers can do bin="$(collector/build.sh | tail -n1)".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="$(realpath "${1:-$here/builder-config.yaml}")"
cache="${OTEL_ASGI_KIT_CACHE:-$HOME/.cache/otel-asgi-kit}"

# OCB is released in lockstep with the collector, so the manifest's
# dist.version also names the builder to use.
version="$(awk '/^dist:/ {d = 1; next} /^[^ #]/ {d = 0} d && $1 == "version:" {print $2; exit}' "$manifest")"
name="$(awk '/^dist:/ {d = 1; next} /^[^ #]/ {d = 0} d && $1 == "name:" {print $2; exit}' "$manifest")"
if [[ -z "$version" || -z "$name" ]]; then
  echo "build.sh: no dist.version or dist.name in $manifest" >&2
  exit 1
fi
if command -v sha256sum >/dev/null; then
  hash="$(sha256sum "$manifest" | cut -c1-12)"
else
  hash="$(shasum -a 256 "$manifest" | cut -c1-12)"
fi
out_dir="$cache/collector/$version-$hash"
bin="$out_dir/$name"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache/collector"
# One build at a time (parallel test workers would each start one); whoever
# waited finds the finished binary below.
if command -v flock >/dev/null; then
  exec 9>"$cache/collector/.build.lock"
  flock 9
fi
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if (( go_minor < 25 )); then
  echo "build.sh: OCB v$version needs Go >= 1.25, found $(go env GOVERSION)" >&2
  exit 1
fi

# Everything Go downloads or compiles lives in our cache dir, so CI can cache
# one directory and `rm -rf` of it works (-modcacherw: module files writable).
# GOTOOLCHAIN=local: never try to download another Go toolchain.
export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOBIN="$cache/go/bin/ocb-v$version"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local

if [[ ! -x "$GOBIN/builder" ]]; then
  echo "build.sh: installing OCB v$version into $GOBIN" >&2
  go install "go.opentelemetry.io/collector/cmd/builder@v$version" >&2
fi

work="$(mktemp -d "$cache/collector/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$manifest" "$work/builder-config.yaml"
echo "build.sh: building $name v$version (takes minutes on a cold cache)" >&2
(cd "$work" && "$GOBIN/builder" --config builder-config.yaml) >&2

mkdir -p "$out_dir"
# Rename into place so no one ever runs a half-copied binary.
mv "$work/otelcol-kit-src/$name" "$out_dir/.$name.tmp"
mv -f "$out_dir/.$name.tmp" "$bin"
echo "$bin"
