#!/usr/bin/env bash
# GPU benchmark in one go, ordered by what matters most when device time is short:
#   0. raw det/rec model calls on CUDA (first run of a shape vs warm; CPU memory arena on vs off),
#   1. the service on CUDAExecutionProvider (time to ready = load + static-shape warm-up),
#   2. HTTP load at concurrency 1/8/32/64 (images/s, p50/p95/p99, batch sizes from /metrics),
#   3. a random-size memory soak on the same server,
#   4. the in-process pipeline on CUDA (batch 1 and 8) and on the CPU of the same machine, for the ratio.
# Exits 3 if the server did not actually get the CUDA provider (no silent CPU numbers).
#
#   bash bench/gpu_bench.sh                      # needs `pip install -e '.[serve,gpu]'` (onnxruntime-gpu)
#   PY=python3 IMAGES=/data/plates OUT_DIR=/tmp/out DURATION=15 SOAK_REQUESTS=2000 bash bench/gpu_bench.sh
#   MODEL_DIR=models/plate SOAK_REQUESTS=0 RUN_PIPELINE=0 DURATION=8 bash bench/gpu_bench.sh   # ~2 min of GPU
#
# The server loads only the bundles the run uses (MODEL_DIR for the generic profile, PROFILE_DIR for PROFILE), so
# the warm-up is that of one deployment serving one profile; ALL_BUNDLES=1 loads every bundle under models/.
set -euo pipefail

PY=${PY:-.venv/bin/python}
PORT=${PORT:-8766}
OUT_DIR=${OUT_DIR:-bench/results}
TAG=${TAG:-gpu}
IMAGES=${IMAGES:-../shared/data/plates}
PROFILE=${PROFILE:-plate}
MODEL_DIR=${MODEL_DIR:-models/base}
PROFILE_DIR=${PROFILE_DIR:-models/$PROFILE}
ALL_BUNDLES=${ALL_BUNDLES:-0}
DURATION=${DURATION:-30}
SOAK_REQUESTS=${SOAK_REQUESTS:-5000}
SOAK_CONCURRENCY=${SOAK_CONCURRENCY:-8}
CPU_THREADS=${CPU_THREADS:-2}
PIPE_LIMIT=${PIPE_LIMIT:-20}  # images for the in-process runs (0 = all)
RUN_PIPELINE=${RUN_PIPELINE:-1}  # 0: skip the in-process runs (their own warm-up costs another minute of GPU)
REQUIRE_CUDA=${REQUIRE_CUDA:-1}  # 0 only to dry-run this script on a CPU box
URL="http://127.0.0.1:${PORT}"
fetch() { "$PY" -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" "$1"; }  # no curl needed
mkdir -p "$OUT_DIR"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# Raw model calls first (about 15 s): the plate det shape and a small rec batch, CPU arena on and off. If these are
# milliseconds and the HTTP numbers below are not, the time goes outside the model calls.
"$PY" bench/session_timing.py --model-dir models/base --providers cuda cpu --cpu-arena on off \
  --det-shapes 1x3x768x768 4x3x768x768 --rec-shapes 4x3x48x320 --repeats 5 | tee "$OUT_DIR/session_timing_${TAG}.txt"

export OCRNET_MODEL_DIR="$MODEL_DIR" OCRNET_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
[ "$REQUIRE_CUDA" = 1 ] || export OCRNET_PROVIDERS=CPUExecutionProvider
export OCRNET_MAX_QUEUE=${OCRNET_MAX_QUEUE:-512}
if [ "$ALL_BUNDLES" = 0 ]; then
  EMPTY_ROOT=$(mktemp -d)  # no auto-discovery: only the bundles named here
  export OCRNET_MODELS_ROOT="$EMPTY_ROOT"
  [ "$PROFILE" = generic ] || export OCRNET_PROFILE_MODELS="{\"$PROFILE\": \"$PROFILE_DIR\"}"
fi
START=$(date +%s)
"$PY" -m uvicorn service.api.app:create_app --factory --host 127.0.0.1 --port "$PORT" --no-access-log \
  >"$OUT_DIR/server_${TAG}.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1200); do
  fetch "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT_DIR/server_${TAG}.log"; exit 2; }
  sleep 0.25
done
echo "ready after $(( $(date +%s) - START )) s"
grep -h "warmed up" "$OUT_DIR/server_${TAG}.log" || true
fetch "$URL/v1/models" | tee "$OUT_DIR/models_${TAG}.json"
echo
[ "$REQUIRE_CUDA" = 0 ] || grep -q CUDAExecutionProvider "$OUT_DIR/models_${TAG}.json" || { echo "server is not on CUDA"; tail -50 "$OUT_DIR/server_${TAG}.log"; exit 3; }

"$PY" bench/load.py --url "$URL" --images "$IMAGES" --profile "$PROFILE" --concurrency 1,8,32,64 \
  --duration "$DURATION" --backoff --out "$OUT_DIR/load_${TAG}.json"
[ "$SOAK_REQUESTS" = 0 ] || "$PY" bench/soak.py --url "$URL" --pid "$SERVER" --images "$IMAGES" --profile "$PROFILE" --requests "$SOAK_REQUESTS" \
  --concurrency "$SOAK_CONCURRENCY" --every "$((SOAK_REQUESTS / 20 > 0 ? SOAK_REQUESTS / 20 : 1))" \
  --min-side 96 --max-side 1280 --out "$OUT_DIR/soak_${TAG}.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
[ "$RUN_PIPELINE" = 1 ] || exit 0

# In-process, same images: CUDA (batch 1 and 8), then the CPU of the same machine (CPU_THREADS intra-op threads).
PIPE_PROVIDERS="cuda cpu"; [ "$REQUIRE_CUDA" = 1 ] || PIPE_PROVIDERS=cpu
"$PY" bench/pipeline_throughput.py --images "$IMAGES" --model-dir "$PROFILE_DIR" --providers $PIPE_PROVIDERS \
  --batch 1 8 --limit "$PIPE_LIMIT" | tee "$OUT_DIR/pipeline_${TAG}.txt"
[ "$REQUIRE_CUDA" = 0 ] || grep -q CUDAExecutionProvider "$OUT_DIR/pipeline_${TAG}.txt" || { echo "pipeline is not on CUDA"; exit 3; }
"$PY" bench/pipeline_throughput.py --images "$IMAGES" --model-dir "$PROFILE_DIR" --threads "$CPU_THREADS" \
  --providers cpu --limit "$PIPE_LIMIT" | tee -a "$OUT_DIR/pipeline_${TAG}.txt"
