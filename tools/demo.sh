#!/bin/sh
# Set up the checkout and build the embedded offline demo release (the README's first command).
set -eu
cd "$(dirname "$0")/.."
sh tools/setup.sh
exec .venv/bin/doit build:demo "$@"
