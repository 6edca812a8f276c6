#!/usr/bin/env bash
# Benchmark: backendtls-sidecar (Native AOT) vs nginx proxy_ssl, both originating verified TLS to the
# same local nginx backend, side by side in one run. See docs/performance.md.
#
#   bash bench/run.sh            full run: 3 interleaved rounds x 10 s (about 5-6 minutes)
#   bash bench/run.sh --quick    smoke run: 1 round x 5 s, 3 startup runs (about 1.5 minutes)
#
# Options (passed on to bench/bench.py unless noted):
#   --quick                 1 round, 5 s per load run, 3 startup runs
#   --rounds N --duration S --startup-runs N
#   --sidecar-bin PATH      use this binary instead of publishing (run.sh)
#   --no-publish            reuse bench/results/aot/backendtls-sidecar from an earlier run (run.sh)
#   --no-threadpool         skip the variant with inline socket completions off (=0; the sidecar's default is on)
#   --no-direct             skip the direct-HTTPS latency baseline
#   --keep                  keep the temporary PKI/config dir
#   --wait-quiet S          wait up to S s for the box to be idle before starting
# Everything listens on 127.0.0.1 only; every process started is killed on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
aot_dir="$here/results/aot"
sidecar_bin=""
publish=1
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) pass+=(--rounds 1 --duration 5 --startup-runs 3) ;;
    --sidecar-bin) sidecar_bin="$(realpath "$2")"; shift ;;
    --no-publish) publish=0 ;;
    --rounds|--duration|--startup-runs|--out|--label|--wait-quiet) pass+=("$1" "$2"); shift ;;
    --no-threadpool|--no-direct|--keep) pass+=("$1") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done

# Tools: Debian packages, installed only when missing.
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

mkdir -p "$here/results"

# Contender A: the AOT-published sidecar.
if [[ -z "$sidecar_bin" ]]; then
  sidecar_bin="$aot_dir/backendtls-sidecar"
  if [[ $publish -eq 1 || ! -x "$sidecar_bin" ]]; then
    echo "[$(date +%T)] dotnet publish sidecar -c Release (Native AOT) -> $aot_dir"
    t0=$(date +%s)
    dotnet publish "$repo/sidecar" -c Release -o "$aot_dir" -nologo -v quiet >"$here/results/publish.log" 2>&1 \
      || { tail -30 "$here/results/publish.log" >&2; echo "AOT publish failed" >&2; exit 1; }
    echo "[$(date +%T)] published in $(( $(date +%s) - t0 )) s"
  fi
fi
[[ -x "$sidecar_bin" ]] || { echo "no sidecar binary at $sidecar_bin" >&2; exit 1; }

# The harness kills its own children (process groups) on exit; this trap makes sure it is stopped too.
harness=""
cleanup() {
  if [[ -n "$harness" ]] && kill -0 "$harness" 2>/dev/null; then
    kill -TERM "$harness" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$harness" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$harness" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench.py" --sidecar-bin "$sidecar_bin" "${pass[@]}" &
harness=$!
wait "$harness"
