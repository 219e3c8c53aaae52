# Usage: bash .gpu/p3/call3.sh SECONDS  (the call's timeout_s)
T0=$(date +%s); LIMIT=${1:-540}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
cp .gpu/p3/data_batch_5 .gpu/p3/test_batch .gpu/p3/batches.meta /root/cifar10/ && ls -l /root/cifar10
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache TF_CPP_MIN_LOG_LEVEL=2
D=/root/cifar10; LOG=$OUT/log.txt
stamp() { echo "=== $(date +%T) [$(( $(date +%s) - T0 ))s, $(left)s left] $*" | tee -a $LOG; }
save() { for f in metrics.json history.csv; do [ -f /root/runs/$1/$f ] && cp /root/runs/$1/$f $OUT/$1_$f; done; cat /root/runs/$1/metrics.json 2>/dev/null | tr -d '\n ' | tee -a $LOG; echo | tee -a $LOG; }
stamp bench
timeout 150 python3 -m keras_resnet.bench --preset seed --batch-size 1024 --precision mixed_bfloat16 --steps 9 --repeats 4 --data-dir $D 2>>$LOG | tee -a $LOG
stamp fast10
timeout 150 python3 train.py --preset fast --epochs 10 --precision mixed_bfloat16 --data-dir $D --output-dir /root/runs/fast10 --no-export >>$LOG 2>&1; save fast10
stamp seed200
timeout $(( $(left) - 25 )) python3 train.py --preset seed --epochs 200 --batch-size 512 --precision mixed_bfloat16 --data-dir $D --output-dir /root/runs/seed200 --no-export > /root/seed200.log 2>&1; echo "rc=$?" >>$LOG
grep -a -v "━" /root/seed200.log | tail -5 >>$LOG; save seed200
if [ $(left) -gt 110 ]; then
  stamp cand10
  timeout $(( $(left) - 15 )) python3 .gpu/p3/candidate.py '{"stem_filters": 64, "stage_filters": [128, 256, 512], "stage_blocks": [1, 1, 1], "stage_strides": [2, 2, 2], "bn_momentum": 0.9}' --preset fast --epochs 10 --batch-size 512 --label-smoothing 0.2 --validation-size 5000 --precision mixed_bfloat16 --data-dir $D --output-dir /root/runs/cand10 --no-export >>$LOG 2>&1; save cand10
fi
stamp end
