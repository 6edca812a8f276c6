#!/usr/bin/env bash
# Transparent capture on one machine (root): a "gateway" network namespace whose client (curl, as nobody)
# dials backend pod IPs in plain HTTP and never hears of the sidecar; capture rules from capture-init; the
# sidecar as its own uid; two TLS backends (openssl s_server) in a second namespace, one with the policy's
# SAN, one with the tutorial's certificate that has none. Addresses from 198.18.0.0/15, only inside the
# namespaces this script makes; everything is removed at the end, whatever happens.
# Usage: sudo bash scripts/demo-transparent.sh   (SIDECAR_DLL=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in ip openssl curl setpriv; do
  command -v "$tool" >/dev/null || { echo "demo-transparent: needs $tool (apt-get install iproute2 openssl curl util-linux)"; exit 2; }
done
command -v nft >/dev/null || command -v iptables >/dev/null || { echo "demo-transparent: needs nft or iptables (apt-get install nftables)"; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "demo-transparent: run as root (it makes network namespaces and netfilter rules)"; exit 2; }

work=$(mktemp -d); chmod 755 "$work"
gw="btls-demo-gw-$$"; be="btls-demo-be-$$"
cleanup() {
  for ns in "$gw" "$be"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

sidecar=${SIDECAR_DLL:-}
if [ -z "$sidecar" ]; then
  echo "building the sidecar..."
  dotnet build sidecar -c Release -o "$work/bin" -v quiet -nologo >/dev/null
  sidecar="$work/bin/backendtls-sidecar.dll"
fi
run() { dotnet "$sidecar" "$@"; }

echo "1. Two network namespaces joined by a veth pair: $gw (the gateway pod) and $be (two backend pods)"
ip netns add "$gw"; ip netns add "$be"
ip -n "$gw" link set lo up; ip -n "$be" link set lo up
ip link add demo-gw netns "$gw" type veth peer name demo-be netns "$be"
ip -n "$gw" addr add 198.18.10.1/24 dev demo-gw; ip -n "$gw" link set demo-gw up
ip -n "$be" addr add 198.18.10.2/24 dev demo-be; ip -n "$be" addr add 198.18.10.3/24 dev demo-be; ip -n "$be" link set demo-be up

echo "2. A private root CA; httpbin's certificate names www.example.com; the tutorial's has no subjectAltName"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/O=example Inc./CN=example.com" \
  -keyout "$work/root.key" -out "$work/root.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=www.example.com" -keyout "$work/httpbin.key" -out "$work/httpbin.csr" 2>/dev/null
openssl x509 -req -in "$work/httpbin.csr" -CA "$work/root.crt" -CAkey "$work/root.key" -set_serial 1 -days 2 \
  -extfile <(printf 'subjectAltName=DNS:www.example.com') -out "$work/httpbin.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=any domain/CN=*" -keyout "$work/legacy.key" -out "$work/legacy.csr" 2>/dev/null
openssl x509 -req -in "$work/legacy.csr" -CA "$work/root.crt" -CAkey "$work/root.key" -set_serial 2 -days 2 -out "$work/legacy.crt" 2>/dev/null
ip netns exec "$be" openssl s_server -accept 198.18.10.2:8443 -cert "$work/httpbin.crt" -key "$work/httpbin.key" -www -quiet >/dev/null 2>&1 &
ip netns exec "$be" openssl s_server -accept 198.18.10.3:8443 -cert "$work/legacy.crt" -key "$work/legacy.key" -www -quiet >/dev/null 2>&1 &

echo "3. The cluster as manifests: two Services and their EndpointSlices, the CA, one BackendTLSPolicy each; render"
cat >"$work/cluster.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: httpbin}
spec: {clusterIP: 198.19.10.1, ports: [{name: https, port: 8443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: httpbin-1, namespace: httpbin, labels: {kubernetes.io/service-name: httpbin}}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints: [{addresses: [198.18.10.2]}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: httpbin}
spec: {clusterIP: 198.19.10.2, ports: [{name: https, port: 8443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-1, namespace: httpbin, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints: [{addresses: [198.18.10.3]}]
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
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: root-ca}], hostname: www.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: legacy, namespace: httpbin}
spec:
  targetRefs: [{group: "", kind: Service, name: legacy}]
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: root-ca}], hostname: www.example.com}
YAML
run render -f "$work/cluster.yaml" -o "$work/config" | sed 's/^/   | /'
chmod -R a+rX "$work/config"

echo "4. capture-init in the gateway's namespace (what the injected init container runs):"
ip netns exec "$gw" env XTABLES_LOCKFILE="$work/xtables.lock" dotnet "$sidecar" capture-init --capture-ports 8443 --ipv6 false | sed 's/^/   | /' | head -n 14

echo "5. The sidecar, as its own uid (15101), with the capture listener on 127.0.0.1:15002"
home="$work/home"; mkdir -p "$home"; chmod 777 "$home"
ip netns exec "$gw" setpriv --reuid 15101 --regid 15101 --clear-groups env HOME="$home" \
  dotnet "$sidecar" run --config-dir "$work/config" --capture-port 15002 --log-level warning >"$work/sidecar.log" 2>&1 &
for _ in $(seq 200); do ip netns exec "$gw" curl -sf http://127.0.0.1:15090/healthz/ready >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$work/out"; chmod 777 "$work/out"
gateway() { ip netns exec "$gw" setpriv --reuid 65534 --regid 65534 --clear-groups curl -sS -m 10 -D - -o "$work/out/body" "$@"; }
echo "6. The gateway (curl as nobody, knowing nothing of the sidecar) dials the httpbin pod in plain HTTP:"
echo "   curl http://198.18.10.2:8443/"
head=$(gateway http://198.18.10.2:8443/) || { echo "   the request failed; sidecar log:"; cat "$work/sidecar.log"; exit 1; }
echo "   HTTP $(echo "$head" | head -n 1 | cut -d' ' -f2)  (openssl s_server answered over TLS it verified:)"
grep -m 2 -E 'Cipher is|^ *Protocol *:' "$work/out/body" | sed 's/^/   | /' || true

echo "7. The same to the pod with the tutorial's certificate (CN=*, no subjectAltName):"
head=$(gateway http://198.18.10.3:8443/)
echo "   HTTP $(echo "$head" | head -n 1 | cut -d' ' -f2) ($(echo "$head" | grep -i '^x-backendtls-error' | tr -d '\r'))"
sed 's/^/   | /' "$work/out/body" | cut -c1-220
echo

echo "8. Metrics:"
ip netns exec "$gw" curl -s http://127.0.0.1:15090/metrics | grep -E '^backendtls_(captured_connections_total|upstream_handshakes_total)' | sed 's/^/   /'
