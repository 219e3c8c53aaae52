# The three one-line calls of 2026-11-27 (thirteenth session) made on a warm machine after
# call5.sh (first machine: wave b, then g) and after call6.sh (second machine: wave h).
# Each was sent as one command; they are kept here as run, one block each.
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache \
  TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false; R=/root/runs; D=/root/cifar10

# Wave b: six runs sharing the GPU, the 45,000/5,000 split (log: wave_b_log.txt).
P="--preset fast --validation-size 5000 --precision mixed_bfloat16 --data-dir $D --no-export"
v() { n=$1; shift; timeout 300 python3 train.py $P --output-dir $R/$n "$@" > $R/$n.log 2>&1; echo "$n rc=$? $* $(python3 -c "import json;m=json.load(open('$R/$n/metrics.json'));print(m['val_accuracy'],m['val_accuracy_tta'],m['train_seconds'])" 2>&1)" | tee -a $OUT/log2.txt; }
v b1 --batch-size 256 --seed 2 & v b2 --batch-size 256 --seed 3 & v b3 --batch-size 512 & v b4 --batch-size 512 --seed 1 & v b5 --batch-size 256 --lookahead 0.95 & v b6 --batch-size 256 --lookahead 0.95 --seed 1 & wait

# g: all 50,000 images, alone, one after the other, then tta.py (log: full_g_log.txt).
for s in 0 1; do n=g_s$s; timeout 150 python3 train.py --preset fast --batch-size 256 --lookahead 0.95 --seed $s --precision mixed_bfloat16 --data-dir $D --no-export --output-dir $R/$n > $R/$n.log 2>&1; echo "$n rc=$? $(python3 -c "import json;m=json.load(open('$R/$n/metrics.json'));print(m['test_accuracy'],m['test_accuracy_tta'],m['train_seconds'])" 2>&1)" | tee -a $OUT/log3.txt; timeout 60 python3 .gpu/p3/tta.py $R/$n $D 2>>$R/$n.log | tee -a $OUT/log3.txt; done

# Wave h: four more seeds of batch 256 + Lookahead 0.95 on the split, sharing the GPU (log: wave_h_log.txt).
P="--preset fast --batch-size 256 --validation-size 5000 --precision mixed_bfloat16 --data-dir $D --no-export"
v() { n=$1; shift; timeout 170 python3 train.py $P --output-dir $R/$n "$@" > $R/$n.log 2>&1; echo "$n rc=$? $* $(python3 -c "import json;m=json.load(open('$R/$n/metrics.json'));print(m['val_accuracy'],m['val_accuracy_tta'],m['train_seconds'])" 2>&1)" | tee -a $OUT/log4.txt; }
v h2 --lookahead 0.95 --seed 2 & v h3 --lookahead 0.95 --seed 3 & v h4 --lookahead 0.95 --seed 4 & v h5 --lookahead 0.95 --seed 5 & wait
