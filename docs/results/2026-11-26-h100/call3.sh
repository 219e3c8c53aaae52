# Call 3 of 3: the last data files, then two waves of training runs, all on the
# 45,000/5,000 split. Usage: bash .gpu/p3/call3.sh LIMIT_SECONDS
# Wave 1 (parallel): fast-preset recipes, 10 epochs; picks the weight decay
# with the best validation accuracy (lr 0.2 rows). Wave 2 (parallel): seed
# 200 epochs (with and without cutout 8) and best 100 epochs at that decay.
# Runs share the GPU, so their times are not speed figures.
T0=$(date +%s); LIMIT=${1:-560}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
D=${DATA:-/root/cifar10}; R=${RUNS:-/root/runs}; mkdir -p $D $R
[ -z "$DRY" ] && cp .gpu/p3/data_batch_5 .gpu/p3/test_batch .gpu/p3/batches.meta $D/
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false
LOG=$OUT/log.txt
stamp() { echo "=== $(date +%T) [$(( $(date +%s) - T0 ))s, $(left)s left] $*" | tee -a $LOG; }
show() { for n in "$@"; do echo "$n $(tr -d '\n ' < $R/$n/metrics.json 2>/dev/null | head -c 400)" | tee -a $LOG; done; }
L9='{"stem_filters": 64, "stage_filters": [128, 256, 512], "stage_blocks": [1, 1, 1], "stage_strides": [2, 2, 2]}'
COMMON="--precision mixed_bfloat16 --validation-size 5000 --data-dir $D --no-export $EXTRA"
W1=${W1:-330}  # seconds kept for wave 2
grid() { n=$1; layout=$2; shift 2
  timeout $(( $(left) - W1 )) python3 .gpu/p3/candidate.py "$layout" --preset fast --epochs ${FAST_EPOCHS:-10} --batch-size 512 --label-smoothing 0.2 $COMMON --output-dir $R/$n "$@" > $R/$n.log 2>&1; echo "$n rc=$?" >> $LOG; }
stamp wave1
grid g1 "$L9" --learning-rate 0.2 --weight-decay 5e-4 &
grid g2 "$L9" --learning-rate 0.2 --weight-decay 2e-3 &
grid g3 "$L9" --learning-rate 0.2 --weight-decay 5e-3 &
grid g4 "$L9" --learning-rate 0.2 --weight-decay 1e-2 &
grid g5 "$L9" --learning-rate 0.4 --weight-decay 5e-3 &
grid g6 '{}' --learning-rate 0.2 --weight-decay 5e-3 &
wait
show g1 g2 g3 g4 g5 g6
WD=$(python3 -c "
import json
best = {}
for n, wd in (('g1', '5e-4'), ('g2', '2e-3'), ('g3', '5e-3'), ('g4', '1e-2')):
    try: best[wd] = json.load(open('$R/%s/metrics.json' % n))['val_accuracy']
    except Exception: pass
print(max(best, key=best.get) if best else '5e-3')")
stamp wave2 weight_decay=$WD
run() { n=$1; shift
  timeout $(( $(left) - 30 )) python3 train.py "$@" --weight-decay $WD $COMMON --output-dir $R/$n > $R/$n.log 2>&1; echo "$n rc=$?" >> $LOG; }
run s1 --preset seed --epochs ${SEED_EPOCHS:-200} --batch-size 512 &
run s2 --preset seed --epochs ${SEED_EPOCHS:-200} --batch-size 512 --cutout 8 &
run b1 --preset best --epochs ${BEST_EPOCHS:-100} --batch-size 512 &
wait
stamp done
show s1 s2 b1
for n in g1 g2 g3 g4 g5 g6 s1 s2 b1; do grep -a -v "━" $R/$n.log | tail -4 > $R/$n.tail; done
tar czf $OUT/runs.tgz -C $R $(cd $R && ls -d */metrics.json */history.csv *.tail 2>/dev/null)
if [ $(left) -gt 100 ]; then stamp bench
  timeout $(( $(left) - 10 )) python3 -m keras_resnet.bench --preset seed --batch-size 1024 --precision mixed_bfloat16 --steps 50 --repeats 5 --data-dir $D 2>>$R/bench.err | tee -a $LOG
fi
stamp end
