# Call 3 of 3: the last data files, then
#  wave 1, sharing the GPU: six `fast` variants for 10 epochs on the
#    45,000/5,000 split, and the seed network for 200 epochs on all 50,000;
#  wave 2, alone on the GPU: the variant with the best validation accuracy
#    (flip TTA) on all 50,000 images, seed 0 then seed 1, each followed by
#    tta.py (test accuracy plain, flip, flip-shift).
# Usage: bash .gpu/p3/call3.sh LIMIT_SECONDS  (a little under the call's timeout)
T0=$(date +%s); LIMIT=${1:-520}; PY=${PY:-python3}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
D=${DATA:-/root/cifar10}; R=${RUNS:-/root/runs}; mkdir -p $D $R
[ -z "$DRY" ] && cp .gpu/p3/data_batch_5 .gpu/p3/test_batch .gpu/p3/batches.meta $D/
export PYTHONPATH=${SITE:-/root/site}:.:$PYTHONPATH KERAS_BACKEND=jax PYTHONUNBUFFERED=1 \
  JAX_COMPILATION_CACHE_DIR=${JCACHE:-/root/jaxcache} TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false
LOG=$OUT/log.txt
stamp() { echo "=== $(date +%T) [$(( $(date +%s) - T0 ))s, $(left)s left] $*" | tee -a $LOG; }
save() { for n in "$@"; do
  for f in metrics.json history.csv; do [ -f $R/$n/$f ] && cp $R/$n/$f $OUT/${n}_$f; done
  grep -a -v "━" $R/$n.log 2>/dev/null | tail -5 > $OUT/${n}_tail.txt
  echo "$n $(tr -d '\n ' < $R/$n/metrics.json 2>/dev/null | head -c 600)" | tee -a $LOG; done; }
P="--precision mixed_bfloat16 --data-dir $D --no-export"
W2=${W2:-150}  # seconds kept for wave 2
V0=""; V1="--crop-padding 2"; V2="--flip alternating"; V3="--stage-filters 128,384,384"
V4="--stage-filters 128,384,384 --flip alternating"
V5="--stage-filters 128,384,384 --flip alternating --crop-padding 2"
variant() { n=$1; shift
  timeout $(( $(left) - W2 )) $PY train.py --preset fast --validation-size 5000 $P --output-dir $R/$n "$@" $EXTRA > $R/$n.log 2>&1
  echo "$n rc=$? $*" | tee -a $LOG; save $n; }

stamp wave1
nvidia-smi -L | tee -a $LOG
( timeout $(( $(left) - W2 )) $PY train.py --epochs ${SEED_EPOCHS:-200} --batch-size 512 $P --output-dir $R/seed200 $EXTRA > $R/seed200.log 2>&1
  echo "seed200 rc=$?" | tee -a $LOG; save seed200 ) &
variant v0 $V0 & variant v1 $V1 & variant v2 $V2 & variant v3 $V3 & variant v4 $V4 & variant v5 $V5 &
wait
WIN=$($PY - "$R" <<'PY'
import json, sys
scores = {}
for n in ("v0", "v1", "v2", "v3", "v4", "v5"):
    try:
        scores[n] = json.load(open(f"{sys.argv[1]}/{n}/metrics.json"))["val_accuracy_tta"]
    except Exception:
        pass
print(max(scores, key=lambda n: (scores[n], -int(n[1]))) if scores else "v0")
PY
)
eval "FLAGS=\$V${WIN#v}"
stamp "wave2: winner $WIN ($FLAGS)"
final() { n=$1; shift
  timeout $(( $(left) - 5 )) $PY train.py --preset fast $P --output-dir $R/$n "$@" $EXTRA > $R/$n.log 2>&1
  echo "$n rc=$? $*" | tee -a $LOG; save $n
  [ $(left) -gt 30 ] && timeout $(( $(left) - 5 )) $PY .gpu/p3/tta.py $R/$n $D 2>>$R/$n.log | tee -a $LOG; }
final f50s0 $FLAGS
[ $(left) -gt 60 ] && final f50s1 $FLAGS --seed 1
stamp end
