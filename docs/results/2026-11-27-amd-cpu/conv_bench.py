import os, time, sys
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
import tensorflow as tf
N = 256
shapes = [("s1c1",32,24,64,2),("s1c2",16,64,64,1),("s2c1",16,64,128,2),("s2c2",8,128,128,1),
          ("s3c1",8,128,256,2),("s3c2",4,256,256,1),("s4c1",4,256,256,2),("s4c2",2,256,256,1)]
def bench(fmt, hw, cin, cout, s):
    if fmt == "NHWC": x = tf.random.normal([N, hw, hw, cin]); strides = [1, s, s, 1]
    else: x = tf.random.normal([N, cin, hw, hw]); strides = [1, 1, s, s]
    w = tf.Variable(tf.random.normal([3, 3, cin, cout]) * 0.05)
    @tf.function
    def step(x):
        with tf.GradientTape() as t:
            t.watch(x)
            y = tf.nn.conv2d(x, w, strides, "SAME", data_format=fmt)
            l = tf.reduce_sum(y * y)
        gx, gw = t.gradient(l, [x, w])
        return tf.reduce_sum(gx) + tf.reduce_sum(gw)
    @tf.function
    def fwd(x):
        return tf.reduce_sum(tf.nn.conv2d(x, w, strides, "SAME", data_format=fmt))
    out = []
    for f in (fwd, step):
        f(x); f(x)
        ts = []
        for _ in range(5):
            t = time.perf_counter(); f(x).numpy(); ts.append(time.perf_counter() - t)
        out.append(sorted(ts)[2] * 1000)
    return out
for name, hw, cin, cout, s in shapes:
    o = hw // s
    gmac = N * o * o * 9 * cin * cout / 1e9
    r = [bench(fmt, hw, cin, cout, s) for fmt in ("NHWC", "NCHW")]
    print(f"{name} {gmac:5.2f} GMAC  NHWC fwd {r[0][0]:6.1f} ms ({2*gmac/r[0][0]*1000:5.0f} GF/s) f+b {r[0][1]:6.1f}   NCHW fwd {r[1][0]:6.1f} f+b {r[1][1]:6.1f}", flush=True)
