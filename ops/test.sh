#!/usr/bin/env bash
# Set up everything, then run the whole test suite (the tests start their own redis-server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash ops/setup.sh
exec .venv/bin/python -m pytest "$@"
