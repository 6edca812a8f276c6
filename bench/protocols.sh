#!/usr/bin/env bash
# WebSocket and gRPC through the sidecar against the same backends direct (p50/p99), 1,000 concurrent
# WebSockets (the sidecar's RSS), and the handshake cost of a client certificate. One run, loopback only.
# Usage: bash bench/protocols.sh [ROUND_TRIPS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet build bench/protocols -c Release -o "$out" -v quiet -nologo >/dev/null
dotnet "$out/ProtocolsBench.dll" "${1:-2000}"
