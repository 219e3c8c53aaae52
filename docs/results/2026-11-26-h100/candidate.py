"""train.py with the `fast` preset's layout replaced by a JSON dict (an experiment, not a preset)."""
import json, runpy, sys
from keras_resnet import presets
presets.PRESETS["fast"] = dict(presets.PRESETS["fast"], **json.loads(sys.argv[1]))
sys.argv = ["train.py"] + sys.argv[2:]
runpy.run_path("train.py", run_name="__main__")
