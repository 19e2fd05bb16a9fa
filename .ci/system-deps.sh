#!/usr/bin/env bash
# System packages the tests use as real peers and consumers: `go tool pprof` reads obskit's
# pprof output, jq is the baseline of the logs benchmark. Best effort: tests that need a
# missing tool skip with the reason.
set -u
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: cannot install ${need[*]} (not root or no apt-get); the tests that need them will skip"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "system-deps: apt-get install ${need[*]} failed; the tests that need them will skip"
exit 0
