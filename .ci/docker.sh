#!/usr/bin/env bash
# A real container engine for the end-to-end tests, with no registry and no network:
# starts dockerd (no bridge, no iptables; containers run with --network none) and makes the
# base image `obskit-base:bookworm` from Debian's packages with debootstrap, cached as a
# tarball so later runs import it in seconds.  Prints one line and exits 0 whatever happens:
# the tests that need the engine skip with the reason when it is not there.
set -u
cache=${OBSKIT_IMAGE_CACHE:-/var/cache/obskit}
image=obskit-base:bookworm
log=/tmp/obskit-dockerd.log

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    echo "docker: no engine installed; container tests will skip"; exit 0
fi
if ! docker info >/dev/null 2>&1; then
    (setsid dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker: dockerd did not start (see $log); container tests will skip"; exit 0
fi
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "docker: engine up, $image present"; exit 0
fi
mkdir -p "$cache"
if [ ! -s "$cache/bookworm-base.tar" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "docker: no debootstrap; container tests will skip"; exit 0
    fi
    root=$(mktemp -d /tmp/obskit-debootstrap-XXXXXX)
    if ! debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,procps,tar \
            bookworm "$root" >"$cache/debootstrap.log" 2>&1; then
        rm -rf "$root"
        echo "docker: debootstrap failed (see $cache/debootstrap.log); container tests will skip"; exit 0
    fi
    tar -C "$root" -cf "$cache/bookworm-base.tar.tmp" . && mv "$cache/bookworm-base.tar.tmp" "$cache/bookworm-base.tar"
    rm -rf "$root"
fi
docker import "$cache/bookworm-base.tar" "$image" >/dev/null && echo "docker: engine up, $image imported" \
    || echo "docker: import failed; container tests will skip"
exit 0
