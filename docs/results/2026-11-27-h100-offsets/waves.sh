# The two one-line calls of 2026-11-27 (fifteenth session) made on the warm H100 after call8.sh.
# Each was sent as one command; kept here as run (the first call's tar failed on its misplaced
# --exclude options and produced nothing; the second call packed those two runs' files).
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache \
  TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false; R=/root/runs; D=/root/cifar10

# Seeds 2 and 3 of the winner, all 50,000 images, alone, then tta.py (log: seeds23_log.txt).
for s in 2 3; do n=full_off16_s$s; timeout 120 python3 train.py --preset fast --offset-lr-scale 16 --seed $s --precision mixed_bfloat16 --data-dir $D --no-export --output-dir $R/$n > $R/$n.log 2>&1; echo "$n rc=$? $(python3 -c "import json;m=json.load(open('$R/$n/metrics.json'));print(m['test_accuracy'],m['test_accuracy_tta'],m['train_seconds'])" 2>&1)" | tee -a $OUT/log5.txt; timeout 60 python3 .gpu/p3/tta.py $R/$n $D 2>>$R/$n.log | tee -a $OUT/log5.txt; done; tar czf $OUT/runs5.tgz -C $R full_off16_s2 full_off16_s3 full_off16_s2.log full_off16_s3.log --exclude='*.keras' --exclude=checkpoints

# Batch 1024 (half the steps) with the winner, on the split, sharing the GPU, at the scaled learning
# rate (0.2 per 128) and at 0.15 (log: batch1024_log.txt).
tar czf $OUT/runs5.tgz -C $R full_off16_s2/metrics.json full_off16_s2/history.csv full_off16_s3/metrics.json full_off16_s3/history.csv full_off16_s2.log full_off16_s3.log; v() { n=$1; shift; timeout 150 python3 train.py --preset fast --offset-lr-scale 16 --validation-size 5000 --precision mixed_bfloat16 --data-dir $D --no-export --output-dir $R/$n "$@" > $R/$n.log 2>&1; echo "$n rc=$? $* $(python3 -c "import json;m=json.load(open('$R/$n/metrics.json'));print(m['val_accuracy'],m['val_accuracy_tta'],m['train_seconds'])" 2>&1)" | tee -a $OUT/log6.txt; }; v b1024_s0 --batch-size 1024 --seed 0 & v b1024_s1 --batch-size 1024 --seed 1 & v b1024lr_s0 --batch-size 1024 --learning-rate 0.15 --seed 0 & v b1024lr_s1 --batch-size 1024 --learning-rate 0.15 --seed 1 & wait; tar czf $OUT/runs6.tgz -C $R $(cd $R && ls -d b1024*/metrics.json b1024*/history.csv b1024*.log)
