"""The run folder: what a run writes, and what `--overwrite` may delete.

A run folder holds `config.json`, `layout.json` (the network's
`build_model` arguments), `history.csv`, `checkpoints/` (`best.keras`,
`last.keras`), `backup/` (Keras' `BackupAndRestore`, while the run is
unfinished), `logs/` (TensorBoard), `model.keras` and, once finished,
`metrics.json`. `prepare_run_dir` makes, resumes or refuses one, and holds
it (`folder_lock`) so that one process at a time writes it.
"""

import csv
import json
import math
import os
import shlex

import numpy as np

from callbacks import BACKUP_METADATA
from callbacks import BACKUP_WEIGHTS
from callbacks import roll_back_backup
from keras_resnet.atomic import is_partial
from keras_resnet.atomic import write_json_atomic
from keras_resnet.config import RUNS_ROOT
from keras_resnet.config import ConfigError
from keras_resnet.config import TrainConfig
from keras_resnet.config import new_run_command
from keras_resnet.evaluate import REPORT_FILES
from keras_resnet.folder_lock import held_elsewhere
from keras_resnet.folder_lock import hold_folder
from keras_resnet.paths import delete_for_overwrite
from keras_resnet.paths import holds_working_directory
from keras_resnet.paths import read_json_object
from keras_resnet.presets import LAYOUT_DEFAULTS
from keras_resnet.presets import preset_layout


def other_network_fix(run):
    """How to go on when the run folder `run` holds another network than its
    preset builds now: commands that work however the run was reached (with
    --resume, which refuses --overwrite, too)."""
    return (
        "Resume it with the keras-resnet version that started it, or train it again with this "
        f"one: {new_run_command(run)} (or --output-dir {shlex.quote(run)} --overwrite, which "
        "deletes the unfinished run)."
    )


# What a run folder holds (and `evaluate`'s report), and the settings any
# run's config.json has: --overwrite deletes nothing else.
RUN_ENTRIES = {"config.json", "layout.json", "history.csv", "metrics.json", "model.keras",
               "checkpoints", "backup", "logs", "evaluation"}
RUN_CONFIG_KEYS = {"preset", "epochs", "batch_size", "seed"}
# The files a run, and `evaluate`'s report, write inside those subfolders.
RUN_SUBFOLDER_FILES = {
    "checkpoints": {"best.keras", "last.keras"},
    "backup": {f"{name}{suffix}" for name in (BACKUP_WEIGHTS, BACKUP_METADATA)
               for suffix in ("", ".bkp", ".unreadable")},
    "evaluation": set(REPORT_FILES),
}


def files_no_run_writes(path):
    """The paths, relative to the run folder `path`, of what `--overwrite`
    must not delete: anything but `RUN_ENTRIES`, the files of
    `RUN_SUBFOLDER_FILES` (for `evaluation/`, also in the one folder per
    model that `evaluate` makes there), TensorBoard's event files under
    `logs/` and the partial files of an interrupted write. A link counts as
    foreign."""
    def is_walked(relative, top, name):  # a folder whose files are checked one by one
        if relative == ".":
            return name in RUN_ENTRIES
        return top == "logs" or relative == "evaluation"

    foreign = []
    for folder, folders, files in os.walk(path):
        relative = os.path.relpath(folder, path)
        top = relative.split(os.sep)[0]
        for name in sorted(folders):
            if os.path.islink(os.path.join(folder, name)) or not is_walked(relative, top, name):
                foreign.append(os.path.normpath(os.path.join(relative, name)))
                folders.remove(name)  # reported whole, not walked
        for name in sorted(files):
            if relative == ".":
                owned = name in RUN_ENTRIES
            elif top == "logs":
                owned = name.startswith("events.out.tfevents.")
            else:
                owned = name in RUN_SUBFOLDER_FILES.get(top, ())
            if not (owned or is_partial(name)) or os.path.islink(os.path.join(folder, name)):
                foreign.append(os.path.normpath(os.path.join(relative, name)))
    return sorted(foreign)


def default_output_dir(config, root=RUNS_ROOT):
    """`runs/<preset>`, or the first `runs/<preset>-N` that is free or holds
    an unfinished run of this very configuration (which is then resumed)."""
    index, layout = 1, run_layout(config)
    while True:
        path = os.path.join(root, config.preset if index == 1 else f"{config.preset}-{index}")
        if not os.path.exists(path):
            return path
        state = run_state(path)
        if (state["unfinished"] and state["config"] == config.identity()
                and state["layout"] in (None, layout) and not held_elsewhere(path)):
            return path
        index += 1


def run_layout(config):
    """The network `config` trains: its preset's `build_model` arguments with
    the config's changes, as JSON stores them (lists, not tuples)."""
    return _json_form(preset_layout(config.preset, **config.model_overrides()))


def _json_form(value):
    return json.loads(json.dumps(value))


def run_state(path):
    """What a run folder holds: its config identity, the network it trains
    (`None` in folders made before `layout.json`), whether it finished."""
    config_path = os.path.join(path, "config.json")
    layout_path = os.path.join(path, "layout.json")
    fix = "fix or move it, or choose another --output-dir."
    saved = layout = None
    if os.path.isfile(config_path):
        saved = read_json_object(config_path, "--output-dir: the run's settings", fix)
        if not RUN_CONFIG_KEYS <= set(saved):  # another program's config.json
            saved = None
    if saved is not None:
        saved = TrainConfig.saved_identity(saved)
    if os.path.isfile(layout_path):
        # An argument added after the run was made builds what the code of
        # that time did: its default.
        layout = _json_form({**LAYOUT_DEFAULTS, **read_json_object(
            layout_path, "--output-dir: the run's network", fix)})
    finished = os.path.isfile(os.path.join(path, "metrics.json"))
    return {"config": saved, "layout": layout, "finished": finished,
            "unfinished": saved is not None and not finished}


def prepare_run_dir(config, overwrite=False):
    """Creates or reopens the run folder; never reuses one silently.

    Resumes an unfinished run of the same configuration and network. A
    finished run, or one of a different configuration, is kept unless
    `overwrite`. A preset whose network changed since the run started (a
    newer keras-resnet) would load the backup's weights into another
    network, so that run is refused too.
    """
    path = config.output_dir
    layout = run_layout(config)
    layout_known = True  # False: resuming a folder from before layout.json
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--output-dir {path} is a file, not a folder.")
    if os.path.isdir(path) and os.listdir(path):
        # Held before it is read: a run that is making the folder holds it
        # before its config.json is written, and is "in use", not "no run".
        _hold_run_dir(config)
        state = run_state(path)
        identity = config.identity()
        if state["config"] is None:  # never deleted, even with --overwrite
            raise ConfigError(
                f"--output-dir {path} is not empty and holds no keras-resnet run; "
                "choose another folder."
            )
        if overwrite and os.path.islink(path):  # rmtree refuses links
            raise ConfigError(
                f"--output-dir {path} is a link to {os.path.realpath(path)}: to replace "
                "that run, pass the folder itself to --output-dir."
            )
        if overwrite and holds_working_directory(path):
            raise ConfigError(
                f"--output-dir {path} is the folder this command runs in, or holds it: "
                "--overwrite would delete it from under the command. Run it from another "
                "folder (cd out of the run first)."
            )
        if overwrite:
            foreign = files_no_run_writes(path)
            if foreign:
                raise ConfigError(
                    f"--output-dir {path} holds files that no run writes ({', '.join(foreign[:5])}), "
                    "which --overwrite would delete; move them out or choose another folder."
                )
            delete_for_overwrite(path, f"--output-dir {path}", "run", "another folder")
        elif state["config"] != identity:
            changed = sorted(
                k for k in set(identity) | set(state["config"])
                if state["config"].get(k) != identity.get(k)
            )
            raise ConfigError(
                f"--output-dir {path} holds a run with other settings ({', '.join(changed)}); "
                "choose another folder or pass --overwrite to replace it."
            )
        elif state["finished"]:
            raise ConfigError(
                f"--output-dir {path} holds a finished run; choose another folder "
                "or pass --overwrite to train it again."
            )
        elif state["layout"] is None:
            layout_known = False
            print(f"Note: {path} was started before run folders recorded their network; "
                  f"resuming it assumes that preset {config.preset!r} builds the same one.")
        elif state["layout"] != layout:
            changed = sorted(k for k in layout if state["layout"].get(k) != layout[k])
            details = ", ".join(f"{k} {state['layout'].get(k)!r} then, {layout[k]!r} now"
                                for k in changed)
            raise ConfigError(
                f"--output-dir {path} holds an unfinished run of another network: preset "
                f"{config.preset!r} changed since it started ({details}). {other_network_fix(path)}"
            )
    try:  # `can_create_folder` trusts `os.access`, which a root user or /sys can defeat
        os.makedirs(path, exist_ok=True)
        _hold_run_dir(config)  # a new folder, or the one --overwrite made: held while still empty
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"--output-dir {path} cannot be created ({e.strerror}); choose another folder."
        ) from None
    if layout_known:
        write_json_atomic(os.path.join(path, "layout.json"), layout)
    # The data folder by its absolute path: `--resume` may run in another folder.
    settings = dict(config.to_dict(), data_dir=config.data_dir and os.path.abspath(config.data_dir))
    write_json_atomic(os.path.join(path, "config.json"), settings)
    return path


def _hold_run_dir(config):
    """Refuses a run folder that another training run is writing (each
    process of a multi-host job writes its own)."""
    if not hold_folder(config.output_dir):
        raise ConfigError(
            f"--output-dir {config.output_dir} is in use: another training run is writing it "
            "now. Wait for that run to end, or choose another folder."
        )


def trim_history(csv_path, epochs):
    """Drops `history.csv` rows of epochs after the first `epochs` (those the
    backup does not hold), so that a resumed run lists every epoch exactly
    once."""
    if not os.path.isfile(csv_path):
        return
    with open(csv_path, errors="replace", newline="") as f:  # rows end as the csv module ends them
        lines = f.read().splitlines(keepends=True)
    if not lines:  # stopped before the first epoch's end: Keras writes the header
        return
    kept = lines[:1]
    for number, line in enumerate(lines[1:], start=2):
        try:
            if line.strip() and int(line.split(",")[0]) < epochs:
                kept.append(line if line.endswith("\n") else line + "\r\n")
        except ValueError:
            raise ConfigError(
                f"{csv_path}, line {number}, is not a row of epoch figures ({line.strip()[:40]!r}); "
                "delete that line (the backup holds the training) and run again."
            ) from None
    with open(csv_path, "w", newline="") as f:
        f.write("".join(kept))


def best_in_history(csv_path, monitor):
    if not os.path.isfile(csv_path):
        return None
    values = []
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            try:
                values.append(float(row.get(monitor)))
            except (TypeError, ValueError):  # "NA" or missing
                pass
    values = [v for v in values if math.isfinite(v)]  # "nan" or "inf" is no best epoch
    return max(values) if values else None


def agree_on_resumed_epoch(backup_dir, epochs):
    """The epoch every process of a multi-process JAX run resumes after: the
    lowest that any of their backups holds. A process whose backup is ahead
    goes back to the one before it (`callbacks.roll_back_backup`). Resumed
    from different epochs, the processes would take their steps together
    with the data and learning rates of different epochs, and run
    different numbers of them."""
    from jax.experimental import multihost_utils

    lowest = int(np.min(multihost_utils.process_allgather(np.int32(epochs))))
    if lowest < epochs:
        roll_back_backup(backup_dir, lowest)
    return lowest


