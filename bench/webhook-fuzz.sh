#!/usr/bin/env bash
# Fuzzes the real webhook process over HTTPS/2 with mutated AdmissionReviews (the test suite's mutator) and
# reports its RSS: idle, peak, at the end and while it settles. Checks every answer against the oracle
# (200 with the uid when it is readable, 400 otherwise, never 500).
# Usage: bash bench/webhook-fuzz.sh [COUNT=100000] [CONCURRENCY=64] [SETTLE_SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
concurrency=${2:-64}
settle=${3:-60}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
dotnet build webhook -c Release -o "$work/bin" -v quiet -nologo >/dev/null
dotnet build bench/webhook-fuzz -c Release -o "$work/fuzz" -v quiet -nologo >/dev/null
port=$((20000 + RANDOM % 20000)); metrics=$((port + 1))
env ${WEBHOOK_ENV:-} dotnet "$work/bin/backendtls-webhook.dll" serve --listen "127.0.0.1:$port" --metrics "127.0.0.1:$metrics" \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --namespace-lookup false --controller false >"$work/webhook.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics/healthz/ready" >/dev/null && break; sleep 0.1; done
sleep 2 # idle RSS after start-up settles
status=0
dotnet "$work/fuzz/WebhookFuzz.dll" "$pid" "$port" tests/BackendTls.Webhook.Tests/Corpus "$count" "$concurrency" "$settle" "$work/tls.crt" || status=$?
echo "webhook memory as it reports it (managed heap vs process):"
curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^(dotnet_total_memory_bytes|process_working_set_bytes|dotnet_collection_count_total)' | sed 's/^/  /'
grep -E '^(Rss|Anonymous|Private_Dirty)' "/proc/$pid/smaps_rollup" | sed 's/^/  /'
exit $status
