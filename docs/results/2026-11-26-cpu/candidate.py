"""train.py with a preset's layout changed by a JSON dict (an experiment, not a preset)."""
import json, runpy, sys
from keras_resnet import presets
preset = sys.argv[sys.argv.index("--preset") + 1]
presets.PRESETS[preset] = dict(presets.PRESETS[preset], **json.loads(sys.argv[1]))
sys.argv = ["train.py"] + sys.argv[2:]
runpy.run_path("train.py", run_name="__main__")
