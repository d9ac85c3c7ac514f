#!/usr/bin/env bash
# Fill the wheel folder that bench/gpu/run.sh installs from on a machine without network:
# the pure-Python packages a GPU image usually lacks, at the versions of constraints.txt.
#   bench/gpu/wheels.sh [DIR]      (default: .whl/ at the repository root, git-ignored)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${1:-$ROOT/.whl}"
mkdir -p "$DIR"
python3 -m pip download --only-binary=:all: --no-deps -d "$DIR" -c "$ROOT/constraints.txt" \
  array-api-compat pytest hypothesis iniconfig pluggy packaging sortedcontainers
ls "$DIR"
