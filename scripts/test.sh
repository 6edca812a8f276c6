#!/usr/bin/env bash
# Runs the whole test suite and ends with one line: "N passed, N failed, N skipped".
# Needs the .NET 10 SDK, openssl and nginx on PATH (.ci/run installs them on a fresh Debian machine).
set -uo pipefail
cd "$(dirname "$0")/.."
results="artifacts/test-results"
rm -rf "$results"
dotnet test Sidecar.sln -c Release --nologo \
  --logger trx --logger "console;verbosity=normal" \
  --results-directory "$results" -- RunConfiguration.TestSessionTimeout=1500000
status=$?
mapfile -t trxs < <(find "$results" -name '*.trx')
if [ ${#trxs[@]} -eq 0 ]; then
  echo "no test results were written (build failure?)"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
total=0; passed=0; failed=0
for trx in "${trxs[@]}"; do
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  total=$((total + $(get total))); passed=$((passed + $(get passed))); failed=$((failed + $(get failed)))
done
skipped=$((total - passed - failed))
echo "$passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
