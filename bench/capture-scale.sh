#!/usr/bin/env bash
# The destination index and policies at cluster scale: 5,000 policy targets, 50,000 endpoints (defaults).
# Prints render/ConfigMap/index/delta figures (bench/capture-scale), then starts the real sidecar on the
# rendered config (5,000 targets, the 50,000-endpoint index) and on a one-target config, the peer of the
# same invocation, and reports time to ready and RSS for both.
# Usage: bash bench/capture-scale.sh [NAMESPACES=500] [SERVICES_PER_NAMESPACE=10] [ENDPOINTS_PER_SERVICE=10] [INJECTED=100]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

dotnet build bench/capture-scale -c Release -o "$work/bench" -v quiet -nologo >/dev/null
dotnet build sidecar -c Release -o "$work/sidecar" -v quiet -nologo >/dev/null
dotnet "$work/bench/CaptureScale.dll" "$work/large" "${1:-500}" "${2:-10}" "${3:-10}" "${4:-100}"

# The peer: the same sidecar on one target.
mkdir -p "$work/small"
cat >"$work/small/backendtls.yaml" <<YAML
apiVersion: backendtls.io/v1
kind: SidecarConfig
targets:
- service: {namespace: a, name: b, port: 443}
  hostname: b.example.com
  wellKnownCACertificates: System
YAML

now_ms() { date +%s%3N; }
start_sidecar() { # name, config dir -> prints "ready_ms rss_kib"
  local name=$1 dir=$2 port=$((20000 + RANDOM % 20000)) started pid
  started=$(now_ms)
  dotnet "$work/sidecar/backendtls-sidecar.dll" run --config-dir "$dir" --listen "127.0.0.1:$port" --admin "127.0.0.1:$((port + 1))" \
    --capture-port "$((port + 2))" --log-level warning >"$work/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$((port + 1))/healthz/ready" >/dev/null && break; sleep 0.05; done
  local ready=$(( $(now_ms) - started ))
  local targets addresses
  targets=$(curl -s "http://127.0.0.1:$((port + 1))/healthz/ready" | grep -o '"targets": *[0-9]*' | grep -o '[0-9]*$')
  addresses=$(curl -s "http://127.0.0.1:$((port + 1))/metrics" | grep '^backendtls_destination_index_addresses ' | awk '{print $2}')
  sleep 2 # settle after start-up
  local rss
  rss=$(awk '/^Rss/ {print $2}' "/proc/$pid/smaps_rollup")
  echo "$ready $rss $targets $addresses"
}
read -r small_ready small_rss small_targets _ < <(start_sidecar small "$work/small")
read -r large_ready large_rss large_targets large_addresses < <(start_sidecar large "$work/large")
echo "real sidecar process (JIT build), start to ready and settled RSS:"
printf '  %-40s ready in %5d ms, RSS %6.1f MiB\n' "$small_targets target (the peer)" "$small_ready" "$(echo "$small_rss / 1024" | bc -l)"
printf '  %-40s ready in %5d ms, RSS %6.1f MiB\n' "$large_targets targets, $large_addresses index addresses" "$large_ready" "$(echo "$large_rss / 1024" | bc -l)"
printf '  ratio: %.1fx the time, %.1fx the memory\n' "$(echo "$large_ready / $small_ready" | bc -l)" "$(echo "$large_rss / $small_rss" | bc -l)"

# The shipped image (Native AOT) under the injector's default 128Mi limit, when scripts/images.sh built it.
image=${SIDECAR_IMAGE:-backendtls-sidecar:ci}
if command -v docker >/dev/null 2>&1 && docker image inspect "$image" >/dev/null 2>&1; then
  chmod -R a+rX "$work/small" "$work/large"
  in_image() { # config dir -> "ready_ms usage"
    local port=$((20000 + RANDOM % 20000)) started name="btls-scale-$RANDOM"
    started=$(now_ms)
    docker run -d --name "$name" --network host --memory 128m -v "$1:/etc/backendtls/config:ro" "$image" \
      run --listen "127.0.0.1:$port" --admin "127.0.0.1:$((port + 1))" --capture-port "$((port + 2))" --log-level warning >/dev/null
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$((port + 1))/healthz/ready" >/dev/null && break; sleep 0.05; done
    local ready=$(( $(now_ms) - started ))
    sleep 2
    echo "$ready $(docker stats --no-stream --format '{{.MemUsage}}' "$name" | cut -d/ -f1) $(docker inspect -f '{{.State.OOMKilled}}' "$name")"
    docker rm -f "$name" >/dev/null
  }
  echo "$image (Native AOT) with --memory 128m, docker run to ready, then memory:"
  read -r ready usage oom < <(in_image "$work/small"); printf '  %-40s ready in %5d ms, %s (OOM killed: %s)\n' "1 target (the peer)" "$ready" "$usage" "$oom"
  read -r ready usage oom < <(in_image "$work/large"); printf '  %-40s ready in %5d ms, %s (OOM killed: %s)\n' "$large_targets targets" "$ready" "$usage" "$oom"
else
  echo "(no $image image: bash scripts/images.sh builds it; the AOT figures are skipped)"
fi

