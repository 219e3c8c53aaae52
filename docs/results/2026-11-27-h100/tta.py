"""Test accuracy of a run's model.keras, plain, flip TTA and flip-shift TTA.

Usage: python tta.py RUN_DIR DATA_DIR  (prints one JSON line)"""
import json
import os
import sys

from keras_resnet.data import load_python_folder
from keras_resnet.evaluate import TTA_TRANSFORMS
from keras_resnet.evaluate import evaluate
from keras_resnet.model import load_model

run_dir, data_dir = sys.argv[1:3]
model = load_model(os.path.join(run_dir, "model.keras"))
cifar = load_python_folder(data_dir)
limit = int(os.environ.get("TTA_LIMIT", 0)) or None  # a dry run
result = {"run": os.path.basename(run_dir)}
for views in ("flip", "flip-shift"):
    metrics, _ = evaluate(model, cifar.x_test[:limit], cifar.y_test[:limit], transforms=TTA_TRANSFORMS[views],
                          batch_size=1000)
    result["test_accuracy"] = metrics["test_accuracy"]
    result[f"test_accuracy_{views}"] = metrics["test_accuracy_tta"]
print(json.dumps(result))
