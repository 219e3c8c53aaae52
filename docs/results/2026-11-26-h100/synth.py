"""Synthetic training throughput (bench.bench_synthetic_training) for one config; one JSON line."""
import json, statistics, sys, time
from keras_resnet import bench, presets
from keras_resnet.config import TrainConfig, prepare_environment

preset, precision, batch, steps, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
overrides = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
presets.PRESETS[preset] = dict(presets.PRESETS[preset], **overrides)
config = TrainConfig(preset=preset, batch_size=batch, precision=precision, epochs=1)
prepare_environment(config)
start = time.perf_counter()
rates, model = bench.bench_synthetic_training(config, steps, repeats)
print(json.dumps(dict(preset=preset, overrides=overrides, precision=precision, batch_size=batch,
                      params=int(model.count_params()), steps=steps, repeats=repeats,
                      train_images_per_sec_synthetic=round(statistics.median(rates), 1),
                      runs=[round(r, 1) for r in rates], device=bench.describe_device(),
                      seconds_with_compile=round(time.perf_counter() - start, 1))), flush=True)
