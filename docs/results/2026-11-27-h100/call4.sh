# Second round (a fresh machine: data again in three calls, this is the third).
#  wave, sharing the GPU: six tweaks of the new `fast` recipe (V5 below) for
#    10 epochs on the 45,000/5,000 split;
#  alone on the GPU, all 50,000 images, the V5 recipe: batch ends waiting
#    for every step (the callbacks before this session), then async (now);
#  alone, the wave's best tweak on 50,000 if it beat both V5 seeds on the split.
# Usage: bash .gpu/p3/call4.sh LIMIT_SECONDS
T0=$(date +%s); LIMIT=${1:-420}; PY=${PY:-python3}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
D=${DATA:-/root/cifar10}; R=${RUNS:-/root/runs}; mkdir -p $D $R
[ -z "$DRY" ] && cp .gpu/p3/data_batch_5 .gpu/p3/test_batch .gpu/p3/batches.meta $D/
export PYTHONPATH=${SITE:-/root/site}:.:$PYTHONPATH KERAS_BACKEND=jax PYTHONUNBUFFERED=1 \
  JAX_COMPILATION_CACHE_DIR=${JCACHE:-/root/jaxcache} TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false
LOG=$OUT/log.txt
stamp() { echo "=== $(date +%T) [$(( $(date +%s) - T0 ))s, $(left)s left] $*" | tee -a $LOG; }
pack() { tar czf $OUT/runs.tgz -C $R $(cd $R && ls -d */metrics.json */history.csv *.log 2>/dev/null); }
show() { echo "$1 $(tr -d '\n ' < $R/$1/metrics.json 2>/dev/null | head -c 700)" | tee -a $LOG; }
P="--precision mixed_bfloat16 --data-dir $D --no-export"
V5="--stage-filters 128,384,384 --flip alternating --crop-padding 2"
W1="--ema 0.99"; W2="--weight-decay 2e-2"; W3="--batch-size 1024 --learning-rate 0.1"
W4="--label-smoothing 0.1"; W5="--learning-rate 0.3"; W6="--seed 1"
variant() { n=$1; shift
  timeout $(( $(left) - ${KEEP:-150} )) $PY train.py --preset fast $V5 --validation-size 5000 $P --output-dir $R/$n "$@" $EXTRA > $R/$n.log 2>&1
  echo "$n rc=$? $*" | tee -a $LOG; show $n; }
stamp wave
nvidia-smi -L | tee -a $LOG
variant w1 $W1 & variant w2 $W2 & variant w3 $W3 & variant w4 $W4 & variant w5 $W5 & variant w6 $W6 &
wait; pack
stamp timing
timeout $(( $(left) - 10 )) $PY .gpu/p3/sync_train.py --preset fast $V5 $P --output-dir $R/t_sync $EXTRA > $R/t_sync.log 2>&1; echo "t_sync rc=$?" | tee -a $LOG; show t_sync
timeout $(( $(left) - 10 )) $PY train.py --preset fast $V5 $P --output-dir $R/t_async $EXTRA > $R/t_async.log 2>&1; echo "t_async rc=$?" | tee -a $LOG; show t_async
pack
WIN=$($PY - "$R" <<'PY'
import json, sys
def val(n):
    try: return json.load(open(f"{sys.argv[1]}/{n}/metrics.json"))["val_accuracy_tta"]
    except Exception: return None
scores = {n: val(n) for n in ("w1", "w2", "w3", "w4", "w5")}
scores = {n: s for n, s in scores.items() if s is not None}
bar = max(0.9338, val("w6") or 0)  # V5 on the split: seed 0 (first session), seed 1 (w6)
best = max(scores, key=scores.get) if scores else None
print(best if best and scores[best] > bar else "none")
PY
)
stamp "winner: $WIN"
if [ "$WIN" != none ] && [ $(left) -gt 60 ]; then
  eval "FLAGS=\$W${WIN#w}"
  timeout $(( $(left) - 5 )) $PY train.py --preset fast $V5 $FLAGS $P --output-dir $R/f_$WIN $EXTRA > $R/f_$WIN.log 2>&1; echo "f_$WIN rc=$? $FLAGS" | tee -a $LOG; show f_$WIN
fi
for n in t_async f_$WIN; do [ -f $R/$n/model.keras ] && [ $(left) -gt 25 ] && timeout $(( $(left) - 5 )) $PY .gpu/p3/tta.py $R/$n $D 2>>$R/$n.log | tee -a $LOG; done
pack
stamp end
