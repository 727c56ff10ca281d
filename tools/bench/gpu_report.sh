#!/usr/bin/env bash
# One GPU session's measurements, in a fixed time budget, results first:
#   1. train: the paper's row (l1_gp_rotated + diff) on NUAA-SIRST 50/50 at the paper's own
#      recipe (configs/nuaa_sirst.py: MSHNet width, crop 256, 400 epochs), then MSHNet as
#      published (mshnet + var + location loss); one process per row, ROW_BUDGET seconds
#      each (SIGTERM at the budget: the row checkpoints and its last evaluation is kept);
#   2. bench: the JAX vs idiomatic PyTorch benchmark of the paper's model (256 and 512,
#      JAX float32 + bfloat16, torch eager; torch.compile with TORCH_COMPILE=1).
#
#   NUAA_DIR=/path/to/nuaa_sirst OUT=runs/gpu_report bash tools/bench/gpu_report.sh
#
# PARTS=train|bench|train,bench (default train,bench); ROWS=paper,mshnet; EPOCHS (400);
# ROW_BUDGET, BENCH_BUDGET (seconds). All processes share one persistent JAX compilation
# cache ($OUT/jax_cache), so a row that restarts, or the second row's eval step, does not
# compile again; AUTOTUNE=N sets --xla_gpu_autotune_level=N (XLA's default when unset:
# lower levels compile faster, possibly with slower kernels). Everything lands in $OUT
# (train/<row>/, benchmark/, versions.txt). Works on an image without TensorFlow
# (dataset.source=memory, the JSON-lines metric writer).
#
# Measured on an H200 (2026-11-27, jax 0.11.2): the JAX train step of the MSHNet-sized
# model compiled in ~60 s at 256 (without a cache) and ran ~400 img/s at 256, batch 8:
# 400 epochs of the 213-image 50/50 split are ~85k images, ~4 min of steps; a torch.compile
# row took > 150 s. Size the budgets from these, not from the step times alone.
set -u
cd "$(dirname "$0")/../.."  # the repository root
OUT=${OUT:-runs/gpu_report}
NUAA_DIR=${NUAA_DIR:-../shared/datasets/nuaa_sirst}
BENCH_BUDGET=${BENCH_BUDGET:-240}
ROW_BUDGET=${ROW_BUDGET:-330}
EPOCHS=${EPOCHS:-400}
ROWS=${ROWS:-paper,mshnet}
PARTS=${PARTS:-train,bench}
TORCH_COMPILE=${TORCH_COMPILE:-0}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT/jax_cache"
export JAX_COMPILATION_CACHE_DIR="$(cd "$OUT/jax_cache" && pwd)"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
if [ -n "${AUTOTUNE:-}" ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=$AUTOTUNE"
fi
t0=$(date +%s)

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import sys, jax, flax, optax, orbax.checkpoint as o, numpy, torch
print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax',
      optax.__version__, 'orbax', o.__version__, 'numpy', numpy.__version__, 'torch',
      torch.__version__, jax.devices())"
} 2>&1 | tee "$OUT/versions.txt"

# Smoke: one tiny jitted train step through the project's code, so an API break shows
# in seconds, not after the budget.
"$PY" - <<'EOF' || { echo "smoke test failed: stopping"; exit 1; }
import functools, jax, jax.numpy as jnp, optax
from irstd_jax import models, train
from irstd_jax.default_config import base_config
c = base_config(); c.model.channels = (4, 4, 8, 8, 8); c.model.blocks = (1, 1, 1, 1)
tx = train.make_optimizer(c.train, optax.constant_schedule(1e-3))
s = train.create_train_state(jax.random.key(0), models.create_model(c.model), tx, (32, 32))
b = {"image": jnp.ones((2, 32, 32, 1)), "mask": jnp.zeros((2, 32, 32, 1)).at[:, 5, 5].set(1)}
step = jax.jit(functools.partial(train.train_step, loss_config=c.loss, steps_per_epoch=10))
s, m = step(s, b, jax.random.key(1))
print("smoke ok:", jax.devices()[0].device_kind, float(m["loss"]))
EOF

if [[ $PARTS == *train* ]]; then
  for row in ${ROWS//,/ }; do
    case $row in
      paper) overrides=() ;;
      mshnet) overrides=(--config.model.name=mshnet --config.loss.scale_weight=var
                         --config.loss.location_weight=1.0) ;;
      *) echo "unknown row $row (paper, mshnet)"; continue ;;
    esac
    mkdir -p "$OUT/train/$row"
    r0=$(date +%s)
    timeout -s TERM "$ROW_BUDGET" "$PY" -m irstd_jax.main --config=configs/nuaa_sirst.py \
        --workdir="$OUT/train/$row" --config.dataset.source=memory \
        --config.dataset.manual_dir="$NUAA_DIR" --config.dataset.train_split=train_50_50.txt \
        --config.dataset.test_split=test_50_50.txt --config.dataset.mean=113.36 \
        --config.dataset.std=59.39 --config.train.num_epochs="$EPOCHS" \
        --config.eval.every_epochs=20 --config.train.log_every_steps=200 "${overrides[@]}" \
        2>&1 | grep -v -E '^(W|I)[0-9]{4} ' | tee -a "$OUT/train/$row/log.txt"
    echo "row $row exit ${PIPESTATUS[0]} after $(( $(date +%s) - r0 )) s (total $(( $(date +%s) - t0 )) s)"
    grep "test @" "$OUT/train/$row/log.txt" | tail -3
  done
fi

if [[ $PARTS == *bench* ]]; then
  rows="jax_float32,jax_bfloat16,torch_idiomatic_eager"
  [ "$TORCH_COMPILE" = 1 ] && rows="$rows,torch_idiomatic_compile"
  timeout -s INT "$BENCH_BUDGET" "$PY" -m tools.bench.benchmark --model=l1_gp_rotated \
      --sizes=256,512 --batch_size=8 --steps=10 --warmup=2 --repeats=3 --rows="$rows" \
      --output_dir="$OUT/benchmark"
  echo "benchmark exit $? after $(( $(date +%s) - t0 )) s"
fi
