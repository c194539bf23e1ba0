#!/usr/bin/env bash
# The CUDA checks, for a machine with a GPU (run from the repository root):
#   1. the GPU-marked tests (tests/test_gpu.py),
#   2. torchrun + NCCL on one GPU (the DDP code path),
#   3. a profile of a 1-epoch CIFAR-10 run ($OUT/startup.prof: where the seconds before the first step go),
#   4. CIFAR-10 with the cifar10-gpu preset and variants of it ($VARIANTS, through benchmarks/gpu_sweep.py; variants
#      start while $BUDGET seconds of the sweep have not passed). Summaries go to $OUT/summaries.jsonl (few files:
#      the GPU machine returns at most 8).
# DATA must hold cifar10-jpg.tar.gz (or cifar-10-python.tar.gz); the GPU tests need Fashion-MNIST's four IDX files,
# found as the other tests find them: Debian's /usr/share/datasets/fashion-mnist, else $FASHION (copied into the
# user cache the tests read, $HOME/.cache/visiontrain/fashion-mnist).
set -u
: "${DATA:?set DATA}" "${OUT:=benchmarks/results/gpu}"
mkdir -p "$OUT"
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -n "${FASHION:-}" ]; then
  mkdir -p "$HOME/.cache/visiontrain/fashion-mnist" && cp "$FASHION"/*.gz "$HOME/.cache/visiontrain/fashion-mnist/"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD VISIONTRAIN_HOME=/tmp/vt-home
PY=${PYTHON:-python3}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, platform; print('torch', torch.__version__, torch.cuda.get_device_name(), 'python', platform.python_version())"

echo "== 1. GPU tests ($(elapsed) s)"
$PY -m pytest tests/test_gpu.py -q -p no:cacheprovider --timeout 150 2>&1 | tail -15

echo "== 2. torchrun + NCCL ($(elapsed) s)"
$PY - <<'PY'
import sys; sys.path.insert(0, "tests")
from pathlib import Path
from realdata import write_fashion_folder
write_fashion_folder(Path("/tmp/fashion-png"), 2000, 500)
PY
$PY -m torch.distributed.run --nproc_per_node=1 -m visiontrain train --dataset /tmp/fashion-png --model simple-cnn \
    --epochs 1 --device cuda --runs-dir /tmp/ddp-runs --name ddp --progress line --report 2>&1 | tail -4
$PY -c "import json; s=json.load(open('/tmp/ddp-runs/ddp/summary.json')); print('ddp', s['distributed'], s['hardware']['precision'], s['test_acc'])"

if [ -z "${SKIP_PROFILE:-}" ]; then
echo "== 3. where the start-up time goes: a profile of a 1-epoch CIFAR-10 run ($(elapsed) s)"
for name in decode profile; do  # the first run decodes the 60,000 JPEGs into the cache once
  [ $name = profile ] && prof="-m cProfile -o $OUT/startup.prof" || prof=
  $PY $prof -m visiontrain train --preset cifar10-gpu --data-dir "$DATA" --runs-dir /tmp/runs --name $name --epochs 1 \
      --progress none --no-report 2>&1 | tail -2
done
$PY -c "import pstats; pstats.Stats('$OUT/startup.prof').sort_stats('cumulative').print_stats(25)" | tail -40
fi

echo "== 4. CIFAR-10 time-to-94% ($(elapsed) s)"
# Each line of VARIANTS: a run name, then the flags that differ from the preset. benchmarks/gpu_sweep.py runs them
# in one process, then the fastest that reached 94% again as a fresh command (its wall time).
AB="--bias-lr-scale 64 --lookahead --flip-mode alternate --lr 1.5 --weight-decay 1.33e-3 --schedule linear"
VARIANTS=${VARIANTS:-"warmup --epochs 1
ab10 $AB --epochs 10 --warmup-epochs 2.3
ab16 $AB --epochs 16 --warmup-epochs 3.7
preset
ab24 $AB --epochs 24 --warmup-epochs 5.5
w1.5-ab16 $AB --epochs 16 --warmup-epochs 3.7 --width 1.5
ab16-lr1 $AB --epochs 16 --warmup-epochs 3.7 --lr 1.0
ab16-lr2.5 $AB --epochs 16 --warmup-epochs 3.7 --lr 2.5
ab16-wd2.5e-3 $AB --epochs 16 --warmup-epochs 3.7 --weight-decay 2.5e-3
flags16 --bias-lr-scale 64 --lookahead --flip-mode alternate
ab40 $AB --epochs 40 --warmup-epochs 9
w1.5-ab24 $AB --epochs 24 --warmup-epochs 5.5 --width 1.5
ab24-pad4 $AB --epochs 24 --warmup-epochs 5.5 --crop-padding 4
ab16-det $AB --epochs 16 --warmup-epochs 3.7 --deterministic
w2-ab24 $AB --epochs 24 --warmup-epochs 5.5 --width 2"}
echo "$VARIANTS" > /tmp/variants.txt
$PY benchmarks/gpu_sweep.py --data-dir "$DATA" --out "$OUT" --variants /tmp/variants.txt --budget "${BUDGET:-300}" --target "${TARGET:-0.94}" \
    2>&1 | tee "$OUT/sweep.log"
echo "== 5. the airbench94 recipe itself on the same pixels ($(elapsed) s)"
$PY benchmarks/airbench_reference.py --data-dir "$DATA" --epochs "${REFERENCE_EPOCHS:-9.9}" --seeds 0,1 2>&1 | tail -6
echo "== done ($(elapsed) s)"
