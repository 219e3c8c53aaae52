set -x
mkdir -p /root/cifar10 /root/site /root/bin && cp .gpu/p1/data_batch_* /root/cifar10/ && cp .gpu/p1/*.py .gpu/p1/*.sh /root/bin/
python3 -m pip install -q --no-index --no-deps --target /root/site .gpu/p1/wheels/*.whl || exit 1
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/root/jaxcache TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi -L; python3 -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())"
for b in 1024 2048; do timeout 100 python3 /root/bin/synth.py seed mixed_bfloat16 $b 30 5 2>>$OUT/call1.err | tee -a $OUT/synth.jsonl; done
tail -5 $OUT/call1.err
