"""Share of the tuner's default width x depth space over the 5M cap, per preset.

Run from the repository root:
    python docs/results/2026-12-03-amd-cpu/cap_share.py

Counts every combination of `default_widths(preset)` and `BLOCK_CHOICES` with
a per-block formula (two 3x3 convolutions and their batch norms, plus a 1x1
projection with its batch norm where the shape changes), whose constant (stem
and head) comes from `count_params` of the preset, and checks the formula
against `count_params` on four random combinations per preset.
"""
import itertools
import random
import sys

sys.path.insert(0, ".")
from keras_resnet.model import count_params  # noqa: E402
from keras_resnet.presets import PARAM_CAP, PRESETS  # noqa: E402
from keras_resnet.hypermodel import BLOCK_CHOICES, default_widths  # noqa: E402


def block_params(inputs, filters, strides):
    params = 9 * inputs * filters + 9 * filters * filters + 8 * filters
    if inputs != filters or strides != 1:
        params += inputs * filters + 4 * filters
    return params


def stage_params(layout, widths, blocks):
    previous = layout["stem_filters"] or 6 * layout["stem_kernel_size"] ** 2
    total = 0
    for filters, depth, strides in zip(widths, blocks, layout["stage_strides"]):
        total += block_params(previous, filters, strides)
        total += (depth - 1) * block_params(filters, filters, 1)
        previous = filters
    return total


for preset, layout in PRESETS.items():
    stem_and_head = count_params(preset) - stage_params(
        layout, layout["stage_filters"], layout["stage_blocks"])

    def formula(widths, blocks):
        return stem_and_head + stage_params(layout, widths, blocks) + 10 * (widths[-1] - layout["stage_filters"][-1])

    space = default_widths(preset)
    stages = len(space)
    combos = [(c[:stages], c[stages:])
              for c in itertools.product(*space, *[BLOCK_CHOICES] * stages)]
    for widths, blocks in random.Random(0).sample(combos, 4):
        exact = count_params(preset, allow_over_cap=True,
                             stage_filters=list(widths), stage_blocks=list(blocks))
        assert exact == formula(widths, blocks), (preset, widths, blocks, exact)
    over = sum(formula(w, b) > PARAM_CAP for w, b in combos)
    print(f"{preset}: {over:,} of {len(combos):,} ({100 * over / len(combos):.1f}%) "
          f"over the cap; widths per stage {space}")
