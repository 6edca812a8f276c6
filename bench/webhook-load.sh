#!/usr/bin/env bash
# Load run for the admission webhook (a script, not a timed test): N concurrent AdmissionReviews of a
# gateway pod over HTTPS/2, as the API server sends them. Prints p50/p99/max latency and checks that every
# answer was a 200 with a patch. Needs: dotnet, openssl, h2load (apt-get install nghttp2-client).
# Usage: bash bench/webhook-load.sh [REQUESTS=1000] [CONCURRENCY=1000]
#        bash bench/webhook-load.sh rate [REVIEWS_PER_SECOND=500] [SECONDS=20]   (sustained, fixed rate, 10 connections)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=count
if [ "${1:-}" = rate ]; then mode=rate; rate=${2:-500}; seconds=${3:-20}; set -- 1000 1000; fi
requests=${1:-1000}
concurrency=${2:-1000}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client"; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
dotnet build webhook -c Release -o "$work/bin" -v quiet -nologo >/dev/null
port=$((20000 + RANDOM % 20000)); metrics=$((port + 1))
dotnet "$work/bin/backendtls-webhook.dll" serve --listen "127.0.0.1:$port" --metrics "127.0.0.1:$metrics" \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --namespace-lookup false --controller false >"$work/webhook.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics/healthz/ready" >/dev/null && break; sleep 0.1; done

# The review: the shape of an Envoy Gateway proxy pod.
cat >"$work/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"load-test","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"envoy-gateway-system","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"envoy-default-eg-","namespace":"envoy-gateway-system","labels":{"app.kubernetes.io/name":"envoy"},"annotations":{"prometheus.io/scrape":"true","prometheus.io/port":"19001"}},"spec":{"containers":[{"name":"envoy","image":"envoyproxy/envoy:distroless-v1.36.0","ports":[{"containerPort":10080,"name":"http"}],"volumeMounts":[{"mountPath":"/certs","name":"certs"}]},{"name":"shutdown-manager","image":"envoyproxy/gateway:v1.6.0"}],"volumes":[{"name":"certs","secret":{"secretName":"envoy"}}]}}}}
JSON

warm=$((concurrency < 100 ? concurrency : 100))
h2load -n 200 -c "$warm" -m 1 -d "$work/review.json" -H 'content-type: application/json' "https://127.0.0.1:$port/mutate" >/dev/null
if [ "$mode" = rate ]; then
  # 10 connections, each sending at rate/10 per second (h2load's --rps is per client), for the duration.
  echo "== AdmissionReviews at $rate/s for ${seconds}s (10 connections, fixed rate), HTTPS/2"
  h2load -c 10 -m 1 --rps $((rate / 10)) -D "$seconds" -d "$work/review.json" -H 'content-type: application/json' \
    --log-file="$work/requests.log" "https://127.0.0.1:$port/mutate" | tee "$work/h2load.txt" | grep -E "^(finished|requests|status codes)"
else
  clients=$((concurrency < 100 ? concurrency : 100)); streams=$(( (concurrency + clients - 1) / clients ))
  echo "== $requests AdmissionReviews, $concurrency in flight ($clients connections x $streams streams), HTTPS/2"
  h2load -n "$requests" -c "$clients" -m "$streams" -d "$work/review.json" -H 'content-type: application/json' \
    --log-file="$work/requests.log" "https://127.0.0.1:$port/mutate" | tee "$work/h2load.txt" | grep -E "^(finished|requests|status codes)"
fi
# log columns: start (us), status, latency (us)
sort -n -k3 "$work/requests.log" | awk '{ l[NR]=$3; s[NR]=$2 } END {
  n=NR; bad=0; for (i=1;i<=n;i++) if (s[i]!=200) bad++;
  printf "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d requests; non-200: %d\n", l[int(n*0.5)]/1000, l[int(n*0.99)]/1000, l[n]/1000, n, bad
  exit bad>0 }'
injected=$(curl -s "http://127.0.0.1:$metrics/metrics" | awk '/^backendtls_webhook_admissions_total\{result="injected"/ {print $2}')
errors=$(curl -s "http://127.0.0.1:$metrics/metrics" | awk '/^backendtls_webhook_admissions_total\{result="error"/ {s+=$2} END {print s+0}')
echo "webhook counted: injected $injected, errors $errors"
[ "$errors" = "0" ]
