#!/usr/bin/env bash
# Runs the whole test suite: setup (install + build) if needed, then ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j"${OMNI_JOBS:-2}"
