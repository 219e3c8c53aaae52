"""Times the epoch-end read of `fast`'s learning rate, eagerly (as before)
and through `callbacks.learning_rate.learning_rate_reader` (compiled once
on JAX), at the 10 epoch ends of a 10-epoch run of 97 steps each.

    KERAS_BACKEND=jax python docs/results/2026-12-04-amd-cpu/learning_rate_reads.py
"""

import os
import sys
import time

sys.path.insert(0, os.getcwd())

import keras  # noqa: E402

from callbacks.learning_rate import learning_rate_reader  # noqa: E402
from keras_resnet.presets import RECIPES  # noqa: E402
from keras_resnet.config import TrainConfig  # noqa: E402
from keras_resnet.training import compile_model  # noqa: E402

STEPS_PER_EPOCH = 97  # 50,000 images in batches of 512

config = TrainConfig(preset="fast", **RECIPES["fast"])
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
compile_model(model, config, STEPS_PER_EPOCH)
optimizer = model.optimizer


def eager_read():
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


print(f"backend {keras.backend.backend()}, {config.epochs} epochs, schedule {config.schedule}, "
      f"warmup {config.warmup_epochs} epochs")
for name, read in (("eager", eager_read), ("reader", learning_rate_reader(optimizer))):
    times, rates = [], []
    for epoch in range(config.epochs):
        optimizer.iterations.assign((epoch + 1) * STEPS_PER_EPOCH)
        start = time.perf_counter()
        rates.append(read())
        times.append(1000 * (time.perf_counter() - start))
    print(f"{name:9s} total {sum(times):7.1f} ms, after the first {sum(times[1:]):6.1f} ms; each: "
          + " ".join(f"{t:.1f}" for t in times))
    print(f"{'':9s} rates " + " ".join(f"{r:.4f}" for r in rates))
