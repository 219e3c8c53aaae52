"""Traces and lowers `fast`'s train step on JAX once, as `fit` does at the
start of every run (the persistent compilation cache is keyed by the lowered
program, so a warm cache saves the compile, not this), and counts the
conditionals in the program: one per evaluation of the warmup schedule.

    KERAS_BACKEND=jax python docs/results/2026-12-04-amd-cpu/train_step_trace.py
"""

import os
import re
import sys
import time

sys.path.insert(0, os.getcwd())

import jax  # noqa: E402
import numpy as np  # noqa: E402

from keras_resnet.model import build_model  # noqa: E402
from keras_resnet.presets import RECIPES  # noqa: E402
from keras_resnet.config import TrainConfig  # noqa: E402
from keras_resnet.training import compile_model  # noqa: E402

config = TrainConfig(preset="fast", **RECIPES["fast"])
model = compile_model(build_model("fast"), config, steps_per_epoch=97)
x = np.zeros((8, 32, 32, 3), "float32")
y = np.zeros((8, 10), "float32")
state = tuple([v.value for v in variables] for variables in (
    model.trainable_variables, model.non_trainable_variables,
    model.optimizer.variables, model.metrics_variables))
start = time.perf_counter()
lowered = jax.jit(model.train_step).lower(state, (x, y))
seconds = time.perf_counter() - start
conditionals = len(re.findall(r"stablehlo\.(?:case|if)\b", lowered.as_text()))
print(f"trace and lower: {seconds:.3f} s, conditionals in the program: {conditionals}")
