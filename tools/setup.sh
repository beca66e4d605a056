#!/bin/sh
# Prepare this checkout on Debian 12 (bookworm) with Python 3.11:
#   sh tools/setup.sh          runtime: a virtualenv in .venv with the pinned requirements
#   sh tools/setup.sh test     also the Debian packages and Python packages the tests use
# Debian packages are installed with apt-get (as root, or through sudo when available).
set -eu
cd "$(dirname "$0")/.."

mode=${1:-run}
RUNTIME_DEBS="python3-venv python3-pip ca-certificates"
TEST_DEBS="git openssl gnupg curl xz-utils zstd libarchive-tools libdb1-compat umoci skopeo podman docker-registry \
bubblewrap apache2-utils qemu-user-static busybox-static libarchive13 libbsd0 libssl3 zlib1g"
# libarchive13 libbsd0 libssl3 zlib1g: what the real pkg binaries the tests run need at run time
# bubblewrap: the sandbox package scripts and run steps are run in (release/sandbox.py)

apt_install() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        echo "setup: need root (or sudo) to install:$missing" >&2; exit 1
    fi
    echo "setup: installing Debian packages:$missing" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install $RUNTIME_DEBS
fi
if [ "$mode" = test ]; then
    # shellcheck disable=SC2086
    apt_install $TEST_DEBS
    # the emulation tests run a real arm64 busybox (busybox-static:arm64) under qemu-aarch64-static
    if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
        $sudo dpkg --add-architecture arm64
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
reqs=requirements.txt
[ "$mode" = test ] && reqs=requirements-test.txt
stamp=.venv/.installed-$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-16)-$mode
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$reqs"
    touch "$stamp"
fi
