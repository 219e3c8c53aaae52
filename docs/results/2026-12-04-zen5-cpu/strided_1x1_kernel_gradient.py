"""The kernel gradient of a 1x1 stride-2 convolution in TensorFlow against NumPy.

    python strided_1x1_kernel_gradient.py CHANNELS [float32|bfloat16]

For each input width in CHANNELS (comma-separated), 100 shapes: 4 output
widths x 5 batch sizes x 5 image sizes. Prints each shape to stderr before
computing it (so that an abort shows which one), then the count of
gradients off by more than the tolerance. TensorFlow 2.21's oneDNN aborted
("double free or corruption", "free(): invalid next size") for every input
width under 16 on an AVX-512 AMD EPYC (family 26).
"""
import itertools
import sys

import ml_dtypes
import numpy as np
import tensorflow as tf

widths = [int(c) for c in sys.argv[1].split(",")]
dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
cast = (lambda a: a.astype(ml_dtypes.bfloat16)) if dtype == "bfloat16" else (lambda a: a)
tolerance = 3e-2 if dtype == "bfloat16" else 1e-4
rng = np.random.default_rng(0)
bad = cases = 0
for cin, cout, n, h in itertools.product(widths, [8, 16, 32, 128], [1, 7, 25, 26, 128],
                                         [4, 8, 15, 16, 32]):
    print(cin, cout, n, h, end="; ", flush=True, file=sys.stderr)
    x = cast(rng.standard_normal((n, h, h, cin)).astype("float32"))
    w = tf.Variable(cast(rng.standard_normal((1, 1, cin, cout)).astype("float32")))
    dy = cast(rng.standard_normal((n, -(-h // 2), -(-h // 2), cout)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.conv2d(x, w, 2, "SAME") * dy)
    grad = tape.gradient(loss, w).numpy()[0, 0].astype("float64")
    # A 1x1 stride-2 convolution with "same" padding reads x[:, ::2, ::2].
    ref = np.einsum("nhwc,nhwd->cd", x[:, ::2, ::2].astype("float64"), dy.astype("float64"))
    cases += 1
    if np.abs(grad - ref).max() / np.abs(ref).max() > tolerance:
        bad += 1
        print(f"\nwrong: input {cin}, output {cout}, batch {n}, size {h}", flush=True)
print(f"\n{dtype}: {cases} shapes, {bad} wrong", flush=True)
