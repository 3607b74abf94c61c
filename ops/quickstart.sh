#!/usr/bin/env bash
# Set up, start a local fleet (Redis, two agents, beat, Flower) and generate tests for the
# bundled example module. The fleet keeps running afterwards; `.venv/bin/fleet down` stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash ops/setup.sh
.venv/bin/fleet up --agents 2
.venv/bin/fleet submit examples/shapes/intervals.py --wait --out generated/
echo
echo "The fleet is still running: '.venv/bin/fleet status' shows it; stop it with '.venv/bin/fleet down'."
