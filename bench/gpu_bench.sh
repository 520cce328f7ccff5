#!/usr/bin/env bash
# GPU benchmark in one go: the service on CUDAExecutionProvider, HTTP load at concurrency 1/8/32/64 (images/s,
# p50/p95/p99, batch sizes from /metrics), a random-size memory soak, and the in-process pipeline on CUDA vs CPU
# on the same machine. Exits 3 if the server did not actually get the CUDA provider (no silent CPU numbers).
#
#   bash bench/gpu_bench.sh                      # needs `pip install -e '.[serve,gpu]'` (onnxruntime-gpu)
#   PY=python3 IMAGES=/data/plates OUT_DIR=/tmp/out DURATION=20 bash bench/gpu_bench.sh
set -euo pipefail

PY=${PY:-.venv/bin/python}
PORT=${PORT:-8766}
OUT_DIR=${OUT_DIR:-bench/results}
IMAGES=${IMAGES:-../shared/data/plates}
DURATION=${DURATION:-30}
SOAK_REQUESTS=${SOAK_REQUESTS:-5000}
SOAK_CONCURRENCY=${SOAK_CONCURRENCY:-8}
MODEL_DIR=${MODEL_DIR:-models/base}
CPU_THREADS=${CPU_THREADS:-2}
PIPE_LIMIT=${PIPE_LIMIT:-0}  # images for the in-process CUDA run (0 = all)
REQUIRE_CUDA=${REQUIRE_CUDA:-1}  # 0 only to dry-run this script on a CPU box
URL="http://127.0.0.1:${PORT}"
mkdir -p "$OUT_DIR"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# In-process first: the quickest proof that the CUDA provider loads and runs (batch 1 and 8).
"$PY" bench/pipeline_throughput.py --images "$IMAGES" --model-dir "$MODEL_DIR" --providers cuda cpu --batch 1 8 \
  --limit "$PIPE_LIMIT" | tee "$OUT_DIR/pipeline_gpu.txt"
[ "$REQUIRE_CUDA" = 0 ] || grep -q CUDAExecutionProvider "$OUT_DIR/pipeline_gpu.txt" || { echo "pipeline is not on CUDA"; exit 3; }

export OCRNET_MODEL_DIR="$MODEL_DIR" OCRNET_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
export OCRNET_MAX_QUEUE=${OCRNET_MAX_QUEUE:-512}
"$PY" -m uvicorn service.api.app:create_app --factory --host 127.0.0.1 --port "$PORT" --no-access-log \
  >"$OUT_DIR/server_gpu.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 240); do
  curl -fs "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT_DIR/server_gpu.log"; exit 2; }
  sleep 0.5
done
curl -fs "$URL/v1/models" | tee "$OUT_DIR/models_gpu.json"
echo
[ "$REQUIRE_CUDA" = 0 ] || grep -q CUDAExecutionProvider "$OUT_DIR/models_gpu.json" || { echo "server is not on CUDA"; tail -50 "$OUT_DIR/server_gpu.log"; exit 3; }

"$PY" bench/load.py --url "$URL" --images "$IMAGES" --concurrency 1,8,32,64 --duration "$DURATION" \
  --out "$OUT_DIR/load_gpu.json"
"$PY" bench/soak.py --url "$URL" --pid "$SERVER" --images "$IMAGES" --requests "$SOAK_REQUESTS" \
  --concurrency "$SOAK_CONCURRENCY" --out "$OUT_DIR/soak_gpu.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

# CPU baseline on the same machine and images, for the CUDA/CPU ratio.
"$PY" bench/pipeline_throughput.py --images "$IMAGES" --model-dir "$MODEL_DIR" --threads "$CPU_THREADS" \
  --providers cpu --limit 20 | tee -a "$OUT_DIR/pipeline_gpu.txt"
