#!/usr/bin/env bash
# What `make test` needs beyond Python, checked up front: one line per missing part, with how to get it.
# Exit 1 when something is missing. `make demo` needs none of this.
set -uo pipefail
missing=0
say() { echo "make test needs $1" >&2; missing=1; }

python_ok="$(${PYTHON:-python3} -c 'import sys; print(int(sys.version_info >= (3, 10)))' 2>/dev/null || echo 0)"
[[ "$python_ok" == 1 ]] || say "Python >= 3.10 as \$PYTHON (found: $(${PYTHON:-python3} --version 2>&1)); install it from your distribution or pyenv"

apt_parts=(prometheus promtool chromium nginx wrk valgrind callgrind_control)
absent=()
for tool in "${apt_parts[@]}"; do command -v "$tool" >/dev/null || absent+=("$tool"); done
if (( ${#absent[@]} )) && [[ "$(id -u)" != 0 ]]; then
  say "root to apt-get install ${absent[*]} (Debian packages prometheus, chromium, nginx, wrk, valgrind), or install them yourself"
elif (( ${#absent[@]} )) && ! command -v apt-get >/dev/null; then
  say "${absent[*]}: no apt-get here; install Debian's packages prometheus, chromium, nginx, wrk, valgrind or their equivalents"
fi

if ! command -v go >/dev/null; then
  say "Go >= 1.25 (it builds our collector with the Collector Builder): https://go.dev/doc/install or your distribution's golang"
else
  minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  (( minor >= 25 )) || say "Go >= 1.25 for the collector build (found $(go env GOVERSION))"
fi

if ! command -v java >/dev/null; then
  say "Java >= 17 for Elasticsearch 8 (Debian: openjdk-17-jre-headless)"
else
  major="$(java -XshowSettings:properties -version 2>&1 | sed -nE 's/^ *java.specification.version = ([0-9]+).*/\1/p')"
  (( ${major:-0} >= 17 )) || say "Java >= 17 for Elasticsearch 8 (found ${major:-unknown})"
fi
command -v mvn >/dev/null || say "Maven to fetch Elasticsearch from Maven Central (Debian: maven)"
command -v unshare >/dev/null || [[ "$(id -u)" != 0 ]] || say "unshare (util-linux) to run Elasticsearch, which refuses root"

exit "$missing"
