"""Training images/s of a preset with the fused batch norm or Keras' own; one line.

python docs/results/2026-11-26-cpu/bn_speed.py fused|keras PRESET BATCH STEPS REPEATS ['{"stem_kernel_size": 3}']
`keras` puts Keras' BatchNormalization.call back in place of the fused one.
"""
import json, statistics, sys, time

import keras
import numpy as np

from keras_resnet.layers import FusedBatchNormalization
from keras_resnet.model import build_model

variant, preset = sys.argv[1], sys.argv[2]
batch, steps, repeats = (int(v) for v in sys.argv[3:6])
overrides = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
if variant == "keras":
    FusedBatchNormalization.call = keras.layers.BatchNormalization.call
model = build_model(preset, **overrides)
model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
              loss="categorical_crossentropy", jit_compile=False)
x = np.random.default_rng(0).uniform(0, 255, (batch, 32, 32, 3)).astype("float32")
y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
model.train_on_batch(x, y)  # trace
rates = []
for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    rates.append(batch * steps / (time.perf_counter() - start))
print(json.dumps(dict(variant=variant, preset=preset, overrides=overrides, batch_size=batch,
                      images_per_sec=[round(r, 1) for r in rates], median=round(statistics.median(rates), 1))))
