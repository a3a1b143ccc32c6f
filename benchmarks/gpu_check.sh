#!/usr/bin/env bash
# The prepared GPU check: at most about 8 minutes on one H200 (each step has its own timeout).
#   - the tests that need CUDA (bf16 autocast, channels_last, GPU snapshots kept on the CPU, the
#     data/augmentation/attack/model tests' CUDA cases),
#   - images/s of ResNet-18 on CIFAR-shaped random data: our loop vs a plain DataLoader loop and the
#     model step alone (the ceiling; the PIL loop is left out: Pillow may not be there),
#   - the tuner's per-epoch overhead on ResNet-18 there.
# Writes $OUT/gpu_check.md (and the logs). Runs from the repository root with the machine's python3
# (its own torch); only torch, numpy, pytest and hypothesis are needed there (plus the mnist1d wheel
# for one data test). A copy without .git can name its commit with AALR_COMMIT=...
set -uo pipefail
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
REPORT="$OUT/gpu_check.md"
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit ${AALR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo '```'
} > "$REPORT"

echo "## CUDA tests" >> "$REPORT"
timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  tests/harness/test_data.py tests/harness/test_augment.py tests/harness/test_attacks.py -k "cuda or gpu or CUDA" \
  > "$OUT/tests.log" 2>&1
echo "exit code $? ; $(tail -n 1 "$OUT/tests.log")" >> "$REPORT"
echo >> "$REPORT"

echo "## Throughput, ResNet-18, batch 256" >> "$REPORT"
timeout 150 "$PY" benchmarks/throughput.py --model resnet18 --data cifar-random --device cuda \
  --samples 20480 --batch-size 256 --repeats 3 --workers 4 --loops bound,ours,tensor --out "$REPORT" > "$OUT/throughput.log" 2>&1 \
  || echo "throughput failed: $(tail -n 3 "$OUT/throughput.log")" >> "$REPORT"

echo "## Tuner overhead, ResNet-18 on CUDA" >> "$REPORT"
echo '```' >> "$REPORT"
timeout 120 "$PY" benchmarks/overhead.py --tasks resnet18 --device cuda --repeats 4 --epochs 4 \
  >> "$REPORT" 2> "$OUT/overhead.log" || echo "overhead failed: $(tail -n 3 "$OUT/overhead.log")" >> "$REPORT"
echo '```' >> "$REPORT"
cat "$REPORT"
