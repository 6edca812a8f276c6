#!/usr/bin/env bash
# Builds both container images and runs them (CI step):
#  1. the sidecar image renders a policy, proxies plain HTTP to a local TLS backend with verification,
#     and refuses a backend whose certificate has no subjectAltName;
#  2. the capture-init image installs the capture rules with NET_ADMIN/NET_RAW only (nft and
#     iptables-legacy), and fails loudly without NET_ADMIN;
#  3. the webhook image answers an AdmissionReview with a patch.
# Ends with one line "images: N passed, N failed, N skipped". Without a usable Docker engine the
# checks are skipped with the reason (this machine reaches no registry: base images are local stand-ins
# built by ../shared/tools/dotnet-base-images.sh).
set -uo pipefail
[ -n "${TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0
report() { echo "images: $passed passed, $failed failed, $skipped skipped"; }
check() { # name, command...
  local name=$1; shift
  if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

export DOCKER_API_VERSION=${DOCKER_API_VERSION:-1.41} DOCKER_BUILDKIT=0
base=../shared/tools/dotnet-base-images.sh
if [ ! -f "$base" ] || ! bash "$base" >/tmp/backendtls-base-images.log 2>&1; then
  echo "SKIP images: no Docker engine with .NET base images ($(tail -n 1 /tmp/backendtls-base-images.log 2>/dev/null))"
  skipped=7; report; exit 0
fi

work=$(mktemp -d); chmod 777 "$work"
containers=(); pids=()
cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

build() { docker build -q -f "$1" -t "$2" "${@:3}" . >/dev/null; }
check "build Dockerfile.sidecar" build Dockerfile.sidecar backendtls-sidecar:ci
check "build Dockerfile.sidecar --target capture-init" build Dockerfile.sidecar backendtls-capture-init:ci --target capture-init
check "build Dockerfile.webhook" build Dockerfile.webhook backendtls-webhook:ci

sidecar_proxies() {
  local port=$((21000 + RANDOM % 10000)) listen admin
  listen=$((port + 1)); admin=$((port + 2))
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ci-root \
    -keyout "$work/root.key" -out "$work/root.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=httpbin -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
  openssl x509 -req -in "$work/leaf.csr" -CA "$work/root.crt" -CAkey "$work/root.key" -set_serial 1 -days 2 \
    -extfile <(printf 'subjectAltName=DNS:www.example.com') -out "$work/leaf.crt" 2>/dev/null
  cat >"$work/policy.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: httpbin}
spec: {ports: [{name: https, port: 8443}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: root-ca, namespace: httpbin}
data:
  ca.crt: |
$(sed 's/^/    /' "$work/root.crt")
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: httpbin, namespace: httpbin}
spec:
  targetRefs: [{group: "", kind: Service, name: httpbin}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: root-ca}]
    hostname: www.example.com
YAML
  docker run --rm -v "$work:/work" backendtls-sidecar:ci render -f /work/policy.yaml -o /work/config || return 1
  openssl s_server -accept "127.0.0.1:$port" -cert "$work/leaf.crt" -key "$work/leaf.key" -www -quiet >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  containers+=(btls-sidecar-ci)
  docker run -d --name btls-sidecar-ci --network host --read-only -v "$work/config:/etc/backendtls/config:ro" backendtls-sidecar:ci \
    run --listen "127.0.0.1:$listen" --admin "127.0.0.1:$admin" --resolve "httpbin.httpbin.svc.cluster.local:8443:127.0.0.1:$port" >/dev/null || return 1
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz/ready" >/dev/null && break; sleep 0.1; done
  # (whole outputs into variables first: grep -q on a pipe would SIGPIPE the writer under pipefail)
  local body metrics logs
  body=$(curl -sf -H 'Host: www.example.com' "http://127.0.0.1:$listen/")
  [[ $body == *s_server* ]] || { echo "proxied body: $body"; docker logs btls-sidecar-ci; return 1; }
  metrics=$(curl -s "http://127.0.0.1:$admin/metrics")
  [[ $metrics == *'backendtls_upstream_handshakes_total{target="httpbin/httpbin:8443",result="ok",reason="verified"}'* ]] || return 1
  logs=$(docker logs btls-sidecar-ci 2>&1)
  [[ $logs == *'"EventId":200'* ]] || { echo "$logs"; return 1; }   # structured JSON logs
  [ "$(docker inspect -f '{{.Config.User}}' backendtls-sidecar:ci)" = "1654:1654" ]
}
check "sidecar image proxies with verification (read-only root, uid 1654, JSON logs)" sidecar_proxies

# As the injected init container runs: root, only NET_ADMIN and NET_RAW, read-only root, the lock on a tmpfs;
# --network none gives it a network namespace of its own.
capture_init() { # mode, extra docker args...
  local mode=$1; shift
  docker run --rm --network none --read-only --cap-drop ALL "$@" --tmpfs /run/xtables -e XTABLES_LOCKFILE=/run/xtables/xtables.lock \
    backendtls-capture-init:ci capture-init --capture-ports 443,8443 --sidecar-ports 15001,15002,15090 --iptables-mode "$mode" 2>&1
}
capture_init_installs() {
  local out
  out=$(capture_init nft --cap-add NET_ADMIN --cap-add NET_RAW) || { echo "$out"; return 1; }
  [[ $out == *'tcp dport { 443, 8443 }'*'redirect to :15002'* ]] || { echo "$out"; return 1; }
  out=$(capture_init iptables-legacy --cap-add NET_ADMIN --cap-add NET_RAW) || { echo "$out"; return 1; }
  [[ $out == *'-A BTLS_OUTPUT -p tcp -m multiport --dports 443,8443 -j REDIRECT --to-ports 15002'* ]] || { echo "$out"; return 1; }
}
check "capture-init image installs the rules with NET_ADMIN and NET_RAW only (nft, iptables-legacy)" capture_init_installs
capture_init_fails_loudly() {
  local out code
  out=$(capture_init nft); code=$?
  [ "$code" -eq 1 ] && [[ $out == *'the pod must not start uncaptured'* ]] || { echo "exit $code: $out"; return 1; }
}
check "capture-init image without NET_ADMIN exits 1 with the reason" capture_init_fails_loudly

webhook_mutates() {
  local port=$((31000 + RANDOM % 10000)) metrics
  metrics=$((port + 1))
  mkdir -p "$work/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/tls/tls.key" -out "$work/tls/tls.crt" 2>/dev/null
  chmod 644 "$work/tls/tls.key"
  containers+=(btls-webhook-ci)
  docker run -d --name btls-webhook-ci --network host --read-only -v "$work/tls:/tls:ro" backendtls-webhook:ci \
    serve --listen "127.0.0.1:$port" --metrics "127.0.0.1:$metrics" --tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key --namespace-lookup false --controller false >/dev/null || return 1
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$metrics/healthz/ready" >/dev/null && break; sleep 0.1; done
  local review='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"ci-1","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"edge","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"gw"},"spec":{"containers":[{"name":"nginx","image":"nginx"}]}}}}'
  local answer
  answer=$(curl -s --cacert "$work/tls/tls.crt" -H 'Content-Type: application/json' -d "$review" "https://localhost:$port/mutate") || { docker logs btls-webhook-ci; return 1; }
  [[ $answer == *'"uid":"ci-1"'* && $answer == *'"patchType":"JSONPatch"'* ]] || { echo "$answer"; docker logs btls-webhook-ci; return 1; }
}
check "webhook image answers an AdmissionReview with a patch" webhook_mutates
report
[ "$failed" -eq 0 ]
