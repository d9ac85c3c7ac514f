#!/usr/bin/env bash
# One prepared GPU run: the GPU tests, `softmax-xp check`, `softmax-xp bench --device cuda` and
# the Triton sweep (bench/gpu/sweep.py), all results under $OUT. No network: packages missing on
# the machine are installed from carried wheels (a folder, default .whl/ at the repository root;
# bench/gpu/wheels.sh fills it on a machine with network).
#
#   OUT=/path/to/results bench/gpu/run.sh              # on the GPU machine (< 8 minutes on an H200)
#   bench/gpu/run.sh --dry-run                         # show what would run; runs nothing heavy
#   OUT=/tmp/x bench/gpu/run.sh --interpret            # the same pipeline on the CPU, under
#                                                      # Triton's interpreter, tiny (no figures)
#
# Each step has its own time limit, so the whole run stays under 8 minutes; a step that fails
# or runs out of time is recorded in $OUT/steps.txt and the next one still runs.
set -uo pipefail

MODE=gpu
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --interpret) MODE=interpret ;;
  "") ;;
  *) echo "usage: $0 [--dry-run | --interpret]" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/bench/out/gpu}"
WHEELS="${WHEELS:-$ROOT/.whl}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
STEPS="$OUT/steps.txt"
: > "$STEPS"
START=$(date +%s)

# step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt, record the status
step() {
  local name="$1" limit="$2"
  shift 2
  if [ "$MODE" = dry ]; then
    echo "[dry-run] $name (limit ${limit}s): $*"
    return 0
  fi
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  echo "$name rc=$rc ${dt}s" | tee -a "$STEPS"
  tail -n 5 "$OUT/$name.txt"
}

# -- environment and offline installs ------------------------------------------------------------
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"array_api_compat": "array-api-compat", "pytest": "pytest", "hypothesis": "hypothesis",
        "numpy": "numpy", "torch": "torch", "triton": "triton"}
print(" ".join(pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
echo "missing here: ${missing:-nothing}"
if [ -n "$missing" ]; then
  if [ "$MODE" = dry ]; then
    echo "[dry-run] would install from $WHEELS: $missing"
  else
    "$PY" -m pip install --no-index --find-links "$WHEELS" $missing > "$OUT/install.txt" 2>&1 \
      || { echo "offline install of '$missing' from $WHEELS failed (see install.txt)" | tee -a "$STEPS"; }
  fi
fi
# The package itself: an editable install when setuptools is there, else straight from src/.
if [ "$MODE" != dry ]; then
  if ! "$PY" -c "import softmax_xp" 2>/dev/null; then
    "$PY" -m pip install --no-index --no-deps --no-build-isolation -e . >> "$OUT/install.txt" 2>&1 \
      || echo "editable install failed: running from src/" | tee -a "$STEPS"
  fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with torch

if [ "$MODE" != dry ]; then
  {
    echo "date: $(date -u +%FT%TZ)"
    command -v nvidia-smi > /dev/null && nvidia-smi
    "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version(), platform.platform())
for m in ("numpy", "torch", "triton", "jax", "jaxlib", "array_api_compat", "pytest", "hypothesis"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "not available:", type(e).__name__)
import torch
print("cuda available:", torch.cuda.is_available(), torch.version.cuda)
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0))
EOF
  } > "$OUT/environment.txt" 2>&1
  cat "$OUT/environment.txt"
fi

# -- the steps ------------------------------------------------------------------------------------
if [ "$MODE" = interpret ]; then
  export TRITON_INTERPRET=1 SOFTMAX_XP_TORCH_CUDA=triton
  step tests 300 env SOFTMAX_XP_BACKENDS=torch "$PY" -m pytest tests/test_triton.py -q -x \
    -p no:cacheprovider -k "test_forward and single and float32 and last" --junitxml="$OUT/tests.xml"
  step check 120 "$PY" -m softmax_xp check --no-integration
  step sweep 240 "$PY" bench/gpu/sweep.py --interpret --out "$OUT" --budget-s 120
else
  # The GPU tests: the Triton kernels compiled for the GPU (test_triton.py) and the main suite on
  # CUDA tensors with the Triton path selected (torch_gpu), JAX on the GPU and CuPy where present.
  step tests 170 env SOFTMAX_XP_BACKENDS=torch_gpu,jax_gpu,cupy SOFTMAX_XP_TORCH_CUDA=triton \
    "$PY" -m pytest tests/test_triton.py tests/test_forward.py tests/test_derivatives.py \
    tests/test_edge_values.py -q -p no:cacheprovider --junitxml="$OUT/tests.xml"
  step check 45 env SOFTMAX_XP_TORCH_CUDA=triton "$PY" -m softmax_xp check --no-integration
  step bench_cli 45 env SOFTMAX_XP_TORCH_CUDA=triton "$PY" -m softmax_xp bench --device cuda \
    --backend torch --dtype float32 --repeats 5 --out "$OUT/cli"
  step sweep 190 "$PY" bench/gpu/sweep.py --out "$OUT" --budget-s 140
  if [ "$MODE" = dry ]; then
    "$PY" bench/gpu/sweep.py --dry-run | tail -n 1
  fi
fi

echo "total $(( $(date +%s) - START ))s; results in $OUT" | tee -a "$STEPS"
