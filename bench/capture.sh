#!/usr/bin/env bash
# The capture path against explicit mode: what transparent capture adds per request. One invocation, one
# bed, three contenders behind the same gateway nginx (workers as nobody) and the same TLS backend nginx:
#   explicit   gateway -> 127.0.0.1:15001 (sidecar, explicit mode) -> verified TLS -> backend
#   captured   gateway -> plain HTTP to the backend pod IP, REDIRECTed to 15002 (SO_ORIGINAL_DST, index
#              lookup) -> verified TLS -> backend                      (the rules capture-init installs)
#   nginx-tls  gateway -> proxy_ssl with verification, no sidecar     (the peer: a gateway doing it itself)
# Per round and contender: wrk -c32 (throughput; CPU per request of the whole gateway pod, nginx workers +
# sidecar, from /proc) and wrk -c1 (latency of one request at a time). Rounds interleave, the order rotates;
# medians are printed with ratios against explicit and against nginx-tls. Root: it makes two network
# namespaces (198.18.20.0/24), removes them at the end whatever happens.
#
#   sudo bash bench/capture.sh                 3 rounds x 10 s (about 3 minutes after the build)
#   sudo bash bench/capture.sh --quick         1 round x 5 s
#   options: --rounds N --duration S --sidecar-bin PATH (default: Native AOT publish into bench/results/aot)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
rounds=3 duration=10 sidecar_bin=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) rounds=1; duration=5 ;;
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    --sidecar-bin) sidecar_bin="$(realpath "$2")"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
[[ "$(id -u)" -eq 0 ]] || { echo "capture bench: run as root (network namespaces, netfilter rules)" >&2; exit 2; }
missing=()
for tool in nginx:nginx-light wrk:wrk openssl:openssl curl:curl ip:iproute2 setpriv:util-linux nft:nftables bc:bc; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -z "$sidecar_bin" ]]; then
  sidecar_bin="$here/results/aot/backendtls-sidecar"
  if [[ ! -x "$sidecar_bin" ]]; then
    echo "[$(date +%T)] dotnet publish sidecar (Native AOT) -> bench/results/aot"
    mkdir -p "$here/results"
    dotnet publish "$repo/sidecar" -c Release -o "$here/results/aot" -nologo -v quiet >"$here/results/publish.log" 2>&1 \
      || { tail -30 "$here/results/publish.log" >&2; exit 1; }
  fi
fi

work=$(mktemp -d); chmod 755 "$work"
gw="btls-bench-gw-$$"; be="btls-bench-be-$$"
cleanup() {
  for ns in "$gw" "$be"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
in_gw() { ip netns exec "$gw" "$@"; }

ip netns add "$gw"; ip netns add "$be"
ip -n "$gw" link set lo up; ip -n "$be" link set lo up
ip link add "bgw$$" netns "$gw" type veth peer name "bbe$$" netns "$be"
ip -n "$gw" addr add 198.18.20.1/24 dev "bgw$$"; ip -n "$gw" link set "bgw$$" up
ip -n "$be" addr add 198.18.20.2/24 dev "bbe$$"; ip -n "$be" link set "bbe$$" up

# PKI: a CA and the backend's certificate for backend.test (with the SAN the policy checks).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=backend.test" \
  -keyout "$work/be.key" -out "$work/be.csr" 2>/dev/null
openssl x509 -req -in "$work/be.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -set_serial 1 -days 2 \
  -extfile <(printf 'subjectAltName=DNS:backend.test') -out "$work/be.crt" 2>/dev/null
head -c 1024 /dev/zero | tr '\0' 'b' >"$work/body"
chmod -R a+rX "$work"

# The backend: one TLS nginx on 8443 (captured port) and 9443 (the peer's, never captured).
cat >"$work/backend.conf" <<NGINX
worker_processes 1;
pid $work/backend.pid;
error_log $work/backend-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 198.18.20.2:8443 ssl; listen 198.18.20.2:9443 ssl;
    ssl_certificate $work/be.crt; ssl_certificate_key $work/be.key;
    location / { root $work; try_files /body =404; default_type text/plain; }
  }
}
NGINX
ip netns exec "$be" nginx -c "$work/backend.conf" -g 'daemon off;' >"$work/backend.log" 2>&1 &

# The gateway: three routes, upstream keep-alive as ingress-nginx configures by default. (proxy_set_header
# is inherited only by levels that set none, so each location clears Connection itself.)
cat >"$work/gateway.conf" <<NGINX
user nobody nogroup;
worker_processes 1;
pid $work/gateway.pid;
error_log $work/gateway-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_http_version 1.1;
  upstream explicit { server 127.0.0.1:15001; keepalive 64; }
  upstream captured { server 198.18.20.2:8443; keepalive 64; }
  upstream tls      { server 198.18.20.2:9443; keepalive 64; }
  server { listen 127.0.0.1:8081;
    location / { proxy_pass http://explicit; proxy_set_header Host backend.bench.svc.cluster.local:8443; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:8082;
    location / { proxy_pass http://captured; proxy_set_header Host backend.test; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:8083;
    location / { proxy_pass https://tls; proxy_set_header Host backend.test; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $work/ca.crt; proxy_ssl_name backend.test;
      proxy_ssl_server_name on; proxy_ssl_session_reuse on; } }
}
NGINX

# The cluster as manifests, rendered as the controller would: the policy target and its endpoint.
cat >"$work/cluster.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec: {clusterIP: 198.19.20.1, ports: [{name: https, port: 8443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints: [{addresses: [198.18.20.2]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bench-ca, namespace: bench}
data:
  ca.crt: |
$(sed 's/^/    /' "$work/ca.crt")
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: backend, namespace: bench}
spec:
  targetRefs: [{group: "", kind: Service, name: backend}]
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: bench-ca}], hostname: backend.test}
YAML
"$sidecar_bin" render -f "$work/cluster.yaml" -o "$work/config" >/dev/null
chmod -R a+rX "$work/config"
in_gw env XTABLES_LOCKFILE="$work/xtables.lock" "$sidecar_bin" capture-init --capture-ports 8443 --ipv6 false >"$work/capture-init.log"
mkdir -p "$work/home"; chmod 777 "$work/home"
in_gw setpriv --reuid 15101 --regid 15101 --clear-groups env HOME="$work/home" \
  "$sidecar_bin" run --config-dir "$work/config" --listen 127.0.0.1:15001 --capture-port 15002 --log-level warning \
  --resolve "backend.bench.svc.cluster.local:8443:198.18.20.2:8443" >"$work/sidecar.log" 2>&1 &
in_gw nginx -c "$work/gateway.conf" -g 'daemon off;' >"$work/gateway.log" 2>&1 &

ready=0
for _ in $(seq 300); do
  if in_gw curl -sf -o /dev/null http://127.0.0.1:15090/healthz/ready && in_gw curl -sf -o /dev/null http://127.0.0.1:8083/; then ready=1; break; fi
  sleep 0.1
done
[[ $ready -eq 1 ]] || { echo "the bed did not come up"; tail -20 "$work"/*.log; exit 1; }

# Validity gate: each route answers 200 with the 1 KiB body, and the captured one really went through capture.
declare -A port=([explicit]=8081 [captured]=8082 [nginx-tls]=8083)
for c in explicit captured nginx-tls; do
  size=$(in_gw curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:${port[$c]}/")
  [[ "$size" == "200 1024" ]] || { echo "validity: $c answered '$size', expected '200 1024'"; cat "$work/sidecar.log"; exit 1; }
done
captured_tls=$(in_gw curl -s http://127.0.0.1:15090/metrics | grep '^backendtls_captured_connections_total{.*outcome="tls"' | awk '{s+=$2} END {print s+0}')
[[ "$captured_tls" -ge 1 ]] || { echo "validity: the captured route did not go through the capture listener"; exit 1; }
for _ in 1 2 3 4; do in_gw curl -s -o /dev/null http://127.0.0.1:8082/; done
again=$(in_gw curl -s http://127.0.0.1:15090/metrics | grep '^backendtls_captured_connections_total{.*outcome="tls"' | awk '{s+=$2} END {print s+0}')
[[ "$again" -eq "$captured_tls" ]] || { echo "validity: the gateway did not keep its upstream connection alive ($captured_tls -> $again captured connections)"; exit 1; }

cpu_ticks() { # gateway pod, by process owner: "<nginx workers (nobody)> <sidecar (15101)>"
  local gateway=0 sidecar=0 p ticks
  for p in $(ip netns pids "$gw"); do
    ticks=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null) || continue
    case "$(stat -c %u /proc/"$p" 2>/dev/null)" in 65534) gateway=$((gateway + ticks)) ;; 15101) sidecar=$((sidecar + ticks)) ;; esac
  done
  echo "$gateway $sidecar"
}
clk=$(getconf CLK_TCK)
to_us() { # wrk latency text (e.g. 1.23ms, 850.00us, 1.01s) -> microseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1000000; else print n }'
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A rps cpu side p50 p99 lat1
contenders=(explicit captured nginx-tls)
echo "capture bench: $rounds round(s) x ${duration}s per run, wrk -t1 -c32 (throughput) and -c1 (latency), $(nproc) cores"
for ((r = 0; r < rounds; r++)); do
  order=("${contenders[@]:r%3}" "${contenders[@]:0:r%3}")
  for c in "${order[@]}"; do
    read -r gw0 sc0 < <(cpu_ticks)
    out=$(in_gw wrk -t1 -c32 -d"${duration}s" --latency "http://127.0.0.1:${port[$c]}/")
    read -r gw1 sc1 < <(cpu_ticks)
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    errors=$(echo "$out" | grep -E 'Non-2xx|Socket errors' || true)
    [[ -z "$errors" ]] || { echo "$c: $errors"; exit 1; }
    rps[$c]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
    cpu[$c]+="$(echo "($gw1 - $gw0 + $sc1 - $sc0) * 1000000 / $clk / $requests" | bc -l) "
    side[$c]+="$(echo "($sc1 - $sc0) * 1000000 / $clk / $requests" | bc -l) "
    p50[$c]+="$(to_us "$(echo "$out" | awk '$1=="50%" {print $2}')") "
    p99[$c]+="$(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')") "
    one=$(in_gw wrk -t1 -c1 -d"$((duration / 2 > 2 ? duration / 2 : 2))s" --latency "http://127.0.0.1:${port[$c]}/")
    lat1[$c]+="$(to_us "$(echo "$one" | awk '$1=="50%" {print $2}')") "
    printf '  round %d %-10s %9.0f req/s  %6.1f us CPU/req (sidecar %5.1f)  p50 %7.0f us  p99 %7.0f us  one-at-a-time p50 %6.0f us\n' "$((r + 1))" "$c" \
      "$(echo "${rps[$c]}" | awk '{print $NF}')" "$(echo "${cpu[$c]}" | awk '{print $NF}')" "$(echo "${side[$c]}" | awk '{print $NF}')" \
      "$(echo "${p50[$c]}" | awk '{print $NF}')" "$(echo "${p99[$c]}" | awk '{print $NF}')" "$(echo "${lat1[$c]}" | awk '{print $NF}')"
  done
done

med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
echo
echo "medians (gateway pod CPU = nginx worker + sidecar; the peer has no sidecar):"
printf '  %-10s %10s %14s %18s %10s %10s %18s\n' contender req/s "CPU us/req" "of it sidecar" "p50 us" "p99 us" "one-at-a-time us"
for c in "${contenders[@]}"; do
  printf '  %-10s %10.0f %14.1f %18.1f %10.0f %10.0f %18.0f\n' "$c" "$(med "${rps[$c]}")" "$(med "${cpu[$c]}")" "$(med "${side[$c]}")" "$(med "${p50[$c]}")" "$(med "${p99[$c]}")" "$(med "${lat1[$c]}")"
done
e_cpu=$(med "${cpu[explicit]}"); c_cpu=$(med "${cpu[captured]}"); n_cpu=$(med "${cpu[nginx-tls]}")
e_one=$(med "${lat1[explicit]}"); c_one=$(med "${lat1[captured]}"); n_one=$(med "${lat1[nginx-tls]}")
printf 'capture vs explicit: %+.1f us CPU per request (%.2fx), %+.0f us one-at-a-time latency (%.2fx), %.2fx the throughput\n' \
  "$(echo "$c_cpu - $e_cpu" | bc -l)" "$(echo "$c_cpu / $e_cpu" | bc -l)" "$(echo "$c_one - $e_one" | bc -l)" "$(echo "$c_one / $e_one" | bc -l)" \
  "$(echo "$(med "${rps[captured]}") / $(med "${rps[explicit]}")" | bc -l)"
printf 'captured vs nginx-tls (the peer): %.2fx the CPU per request, %.2fx the one-at-a-time latency, %.2fx the throughput\n' \
  "$(echo "$c_cpu / $n_cpu" | bc -l)" "$(echo "$c_one / $n_one" | bc -l)" "$(echo "$(med "${rps[captured]}") / $(med "${rps[nginx-tls]}")" | bc -l)"
echo "captured connections by outcome:"
in_gw curl -s http://127.0.0.1:15090/metrics | grep '^backendtls_captured_connections_total' | sed 's/^/  /'
