"""Images per second of the host input pipeline's parts, alone, no model.

Run from a checkout's root: `PYTHONPATH=. python pipeline_parts.py`. It
times `data.train_dataset` (batch 256, 50,000 random images) with no
augmenter, with the crop alone (padding 1, `fast-cpu`'s), with the flip
alone, and with both (`build_augmenter(padding=1)`), 60 batches each after
one warm-up batch.
"""
import time

import numpy as np

from keras_resnet import data
try:  # keras_resnet/augment.py since 3ea0596
    from keras_resnet.augment import RandomPadCrop, build_augmenter
except ImportError:  # the code this was timed on
    from keras_resnet.layers import RandomPadCrop, build_augmenter

BATCH, BATCHES = 256, 60


def images_per_sec(dataset):
    batches = iter(dataset)
    next(batches)
    start = time.perf_counter()
    for _ in range(BATCHES):
        next(batches)
    return BATCHES * BATCH / (time.perf_counter() - start)


rng = np.random.default_rng(0)
x = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, 50_000)
for name, augmenter in [
    ("gather only", None),
    ("crop only", RandomPadCrop(1, seed=0)),
    ("flip only", build_augmenter(padding=0, seed=0)),
    ("crop and flip", build_augmenter(padding=1, seed=0)),
]:
    rate = images_per_sec(data.train_dataset(x, y, BATCH, augmenter=augmenter))
    print(f"{name}: {rate:.0f} images/s", flush=True)
