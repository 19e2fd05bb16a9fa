#!/usr/bin/env bash
# System packages the tests use as real peers and consumers:
#   golang-go        `go tool pprof` reads obskit's pprof output (profile, serve)
#   jq               consumer of --json and the baseline of the logs benchmark
#   chromium(-driver) the HTML pages are loaded in a real headless browser
#   prometheus       scrapes `obskit serve` in its tests
#   gdb              injects the agent into a running process (`gc --inject`)
#   docker.io, debootstrap  the snapshot end-to-end test runs real containers
# Installs what is missing (as root, with apt-get).  Under CI=true a consumer that could not be
# installed fails the run in tests/conftest.py; elsewhere the tests that need it skip and the
# summary lists them.
set -u
declare -A cmd=(
    [golang-go]=go [jq]=jq [chromium]=chromium [chromium-driver]=chromedriver
    [prometheus]=prometheus [gdb]=gdb [docker.io]=dockerd [debootstrap]=debootstrap
)
need=()
for pkg in "${!cmd[@]}"; do
    command -v "${cmd[$pkg]}" >/dev/null 2>&1 || need+=("$pkg")
done
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
