"""The time each stored GPU run spent in `fit` outside its training steps:
`train_seconds` (metrics.json) less the steps' time, taken from each
epoch's `images_per_sec` (history.csv), per epoch. Runs that resumed are
left out.

    python docs/results/2026-12-04-amd-cpu/outside_steps.py
"""

import csv
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

for metrics_path in sorted(glob.glob(os.path.join(HERE, "..", "2026-11-2*-h*", "*_metrics.json"))):
    history_path = metrics_path.replace("_metrics.json", "_history.csv")
    if not os.path.exists(history_path):
        continue
    metrics = json.load(open(metrics_path))
    rows = [row for row in csv.DictReader(open(history_path))
            if row.get("images_per_sec") not in (None, "", "NA")]
    images, seconds = metrics.get("train_images"), metrics.get("train_seconds")
    if not rows or not images or not seconds or metrics.get("resumed_after_epoch"):
        continue
    steps = sum(images / float(row["images_per_sec"]) for row in rows)
    folder = os.path.basename(os.path.dirname(metrics_path))
    name = os.path.basename(metrics_path)[: -len("_metrics.json")]
    print(f"{folder:22s} {name:16s} epochs {len(rows):3d}  fit {seconds:7.2f} s  steps {steps:7.2f} s  "
          f"outside {seconds - steps:6.2f} s = {1000 * (seconds - steps) / len(rows):5.0f} ms per epoch")
