"""The host's share of `fast`'s alternating flips, before and after `mirror_in_place`.

Run from the repository root (KERAS_BACKEND=jax, as on the GPU):
    KERAS_BACKEND=jax python docs/results/2026-12-03-amd-cpu/device_batch_flips.py DIR

Checks that `data.device_batches` gives what the code before gave (the
flips written on the float32 batch, one channel value at a time) for two
epochs of real CIFAR-10 batches, then times, per batch of 512: the old flip,
`mirror_in_place` on the uint8 batch, and a whole batch of `device_batches`
with and without alternating flips.
"""
import sys
import time

import numpy as np

sys.path.insert(0, ".")
from keras_resnet import data  # noqa: E402

BATCH = 512
x, y = data.load_cifar10(sys.argv[1])[:2]
steps = len(x) // BATCH


def old_batch(index, seed=0):
    epoch, step = divmod(index, steps)
    mine = data.epoch_order(len(x), seed, epoch)[step * BATCH:(step + 1) * BATCH]
    images = x[mine].astype("float32")
    mirror = data.first_flips(len(x), seed)[mine] != (epoch % 2 == 1)
    images[mirror] = images[mirror, :, ::-1]
    return images


new = data.device_batches(x, y, BATCH, alternate_flips=True)
for index in range(2 * steps):
    np.testing.assert_array_equal(new[index][0], old_batch(index))
print(f"device_batches equals the old flips on {2 * steps} batches (2 epochs)")


def ms_per_call(function, calls=200):
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e3


rng = np.random.default_rng(0)
picks = rng.permutation(len(x))[:BATCH]
which = rng.random(BATCH) < 0.5


def old_flip():
    images = x[picks].astype("float32")
    images[which] = images[which, :, ::-1]


def new_flip():
    images = x[picks]
    data.mirror_in_place(images, which)
    images.astype("float32")


plain = data.device_batches(x, y, BATCH)
counter = iter(range(10**9))
for name, function in [
    ("gather, cast, old flip", old_flip),
    ("gather, mirror_in_place, cast", new_flip),
    ("device_batches, random flips (none on the host)", lambda: plain[next(counter) % steps]),
    ("device_batches, alternating flips", lambda: new[next(counter) % steps]),
]:
    print(f"{name}: {ms_per_call(function):.2f} ms per batch of {BATCH}")
