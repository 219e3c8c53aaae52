import os, sys, time, json
sys.path.insert(0, "/work/main")
import numpy as np, keras, tensorflow as tf
from keras_resnet.config import TrainConfig
from keras_resnet import training
from keras_resnet.model import build_model
preset = sys.argv[1]; bs = int(sys.argv[2]); overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
cfg = TrainConfig(preset=preset, batch_size=bs)
keras.utils.set_random_seed(0)
model = build_model(preset, **overrides)
print("params", model.count_params())
training.compile_model(model, cfg, 100)
x = np.random.rand(bs, 32, 32, 3).astype("float32") * 255
y = keras.utils.to_categorical(np.random.randint(0, 10, bs), 10)
ds = tf.data.Dataset.from_tensors((x, y)).repeat()
model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
t = time.perf_counter(); model.fit(ds, steps_per_epoch=8, epochs=1, verbose=0); dt = time.perf_counter() - t
print("img/s", 8 * bs / dt)
if os.environ.get("TRACE"):
    tf.profiler.experimental.start("/tmp/prof/log")
    model.fit(ds, steps_per_epoch=4, epochs=1, verbose=0)
    tf.profiler.experimental.stop()
