#!/bin/sh
# Install the test dependencies and run the whole test suite (the README's second command; CI runs it too).
set -eu
cd "$(dirname "$0")/.."
sh tools/setup.sh test
exec .venv/bin/python -m pytest -n 2 -q -p no:cacheprovider tests "$@"
