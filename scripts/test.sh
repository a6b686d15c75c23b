#!/usr/bin/env bash
# Runs the whole test suite: setup (install + build) if needed, then ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# ctest runs OMNI_JOBS tests at once: one intra-op thread each unless the caller says otherwise
# (omni's own default is every CPU, which would oversubscribe the cores several times over).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ctest --test-dir build --output-on-failure -j"${OMNI_JOBS:-2}"
