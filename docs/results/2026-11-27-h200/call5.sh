# Next GPU session, call 3 of 3 (after .gpu/p1/call1.sh and the p2 copy): the last data files, then
#  wave, sharing the GPU, 10 epochs of `fast` (128/384/384, alternating flips, crops padded
#    by 2) on the 45,000/5,000 split, two seeds each, since one seed's noise (about 0.3
#    points) is as large as the effects sought: Lookahead 0.95 (--lookahead), batch 256,
#    and the preset itself (seeds 2 and 3; seeds 0 and 1 gave 93.38% and 93.62% flip TTA);
#  alone, all 50,000 images: the tweak whose two-seed mean beat the preset's four-seed mean
#    by 0.2 points, seeds 0 and 1; else the preset with seed 2. Then tta.py.
# Usage: bash .gpu/p3/call5.sh LIMIT_SECONDS
T0=$(date +%s); LIMIT=${1:-540}; PY=${PY:-python3}
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
A1="--lookahead 0.95"; A2="--lookahead 0.95 --seed 1"; A3="--batch-size 256"
A4="--batch-size 256 --seed 1"; A5="--seed 2"; A6="--seed 3"
variant() { n=$1; shift
  timeout $(( $(left) - ${KEEP:-170} )) $PY train.py --preset fast --validation-size 5000 $P --output-dir $R/$n "$@" $EXTRA > $R/$n.log 2>&1
  echo "$n rc=$? $*" | tee -a $LOG; show $n; }
stamp wave
nvidia-smi -L | tee -a $LOG
variant a1 $A1 & variant a2 $A2 & variant a3 $A3 & variant a4 $A4 & variant a5 $A5 & variant a6 $A6 &
wait; pack
WIN=$($PY - "$R" <<'PY'
import json, sys
def val(n):
    try: return json.load(open(f"{sys.argv[1]}/{n}/metrics.json"))["val_accuracy_tta"]
    except Exception: return None
base = [0.9338, 0.9362, val("a5"), val("a6")]  # the preset: seeds 0, 1 (2026-11-27), 2, 3
base = sum(b for b in base if b is not None) / len([b for b in base if b is not None])
pairs = {"a1": ("a1", "a2"), "a3": ("a3", "a4")}
means = {}
for name, runs in pairs.items():
    got = [val(r) for r in runs]
    if None not in got:
        means[name] = sum(got) / 2
print("means", means, "preset", round(base, 4), file=sys.stderr)
best = max(means, key=means.get) if means else None
print(best if best and means[best] >= base + 0.002 else "none")
PY
)
stamp "winner: $WIN"
if [ "$WIN" != none ]; then eval "FLAGS=\$A${WIN#a}"; RUNS50="f_${WIN}_s0 f_${WIN}_s1"; else FLAGS=""; RUNS50="f_s2"; fi
for n in $RUNS50; do
  [ $(left) -gt 40 ] || break
  case $n in *_s1) S="--seed 1";; f_s2) S="--seed 2";; *) S="";; esac
  timeout $(( $(left) - 20 )) $PY train.py --preset fast $(echo $FLAGS | sed 's/--seed [0-9]*//') $S $P --output-dir $R/$n $EXTRA > $R/$n.log 2>&1
  echo "$n rc=$? $FLAGS $S" | tee -a $LOG; show $n
  [ -f $R/$n/model.keras ] && [ $(left) -gt 15 ] && timeout $(( $(left) - 5 )) $PY .gpu/p3/tta.py $R/$n $D 2>>$R/$n.log | tee -a $LOG
  pack
done
stamp end
