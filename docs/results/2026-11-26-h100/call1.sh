# Call 1 of 3: wheels, data_batch_1-2, and the synthetic training rate (needs no data).
set -x
mkdir -p /root/cifar10 /root/site /root/runs && cp .gpu/p1/data_batch_* /root/cifar10/
python3 -m pip install -q --no-index --no-deps --target /root/site .gpu/p1/wheels/*.whl || exit 1
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi -L; python3 -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())"
git log -1 --format=%H 2>/dev/null
timeout 120 python3 .gpu/p1/synth.py seed mixed_bfloat16 1024 50 5 2>$OUT/call1.err | tee $OUT/synth.jsonl
tail -3 $OUT/call1.err
