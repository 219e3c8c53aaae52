# Call 1 of 3: wheels and data_batch_1-2.
mkdir -p /root/cifar10 /root/site /root/runs && cp .gpu/p1/data_batch_* /root/cifar10/
python3 -m pip install -q --no-index --no-deps --target /root/site .gpu/p1/wheels/*.whl || exit 1
export PYTHONPATH=/root/site:. KERAS_BACKEND=jax
nvidia-smi -L; python3 -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())"
ls -l /root/cifar10
