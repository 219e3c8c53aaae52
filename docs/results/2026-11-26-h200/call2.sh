set -x
cp .gpu/p2/data_batch_* /root/cifar10/
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache TF_CPP_MIN_LOG_LEVEL=2
timeout 50 python3 /root/bin/synth.py fast mixed_bfloat16 256 30 5 2>>$OUT/call2.err | tee -a $OUT/synth.jsonl
timeout 50 python3 /root/bin/synth.py fast mixed_bfloat16 512 30 5 '{"stem_filters": 64, "stage_filters": [128, 256, 512], "stage_blocks": [1, 1, 1], "stage_strides": [2, 2, 2], "bn_momentum": 0.9}' 2>>$OUT/call2.err | tee -a $OUT/synth.jsonl
ls /root/cifar10; tail -3 $OUT/call2.err
