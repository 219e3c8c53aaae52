"""A search's project folder, its settings file and its results files.

The project folder (`--directory`/`--project-name`) holds KerasTuner's
state, `search.json` (the settings of the search: `check_project` refuses
to continue a search of other ones, and records them), `summary.csv` (one
row per trial: `summarize`, `write_results`) and `best_config.json` (the
best completed trial's TrainConfig keys). `--overwrite` replaces a project
only if everything in it is this command's or KerasTuner's
(`files_no_search_writes`). A single process, or the chief of a distributed
search, holds the folder (`folder_lock`) and writes these files; the
workers write only KerasTuner's. Keras-free: the command line checks the
project before Keras loads.
"""

import csv
import json
import os
import re
import sys

from keras_resnet.atomic import is_partial
from keras_resnet.atomic import write_atomically
from keras_resnet.atomic import write_json_atomic
from keras_resnet.config import RUNS_ROOT
from keras_resnet.config import ConfigError
from keras_resnet.config import TrainConfig
from keras_resnet.data import python_folder
from keras_resnet.folder_lock import hold_folder
from keras_resnet.hypermodel import TUNED_KEYS
from keras_resnet.paths import can_create_folder
from keras_resnet.paths import delete_for_overwrite
from keras_resnet.paths import empty_folder_problem
from keras_resnet.paths import folder_name_problem
from keras_resnet.paths import holds_working_directory
from keras_resnet.paths import read_json_object
from keras_resnet.presets import PARAM_CAP

# Where projects go without --directory.
TUNING_ROOT = f"{RUNS_ROOT}/tuning"

# `best_config.json`: the tuned fields and the rest of the recipe the trials
# trained with, so that `train.py --config` (which starts from the preset's
# recipe) trains what was tuned. Not the data sizes, epochs or seed.
BEST_CONFIG_KEYS = ("preset", *TUNED_KEYS, "batch_size", "momentum", "schedule",
                    "warmup_epochs", "label_smoothing", "crop_padding", "cutout", "flip", "ema",
                    "lookahead", "offset_lr_scale", "bn_momentum", "precision")
SEARCH_FILE = "search.json"
SUMMARY_FILE = "summary.csv"
BEST_CONFIG_FILE = "best_config.json"
# What KerasTuner writes in a trial's folder (Keras 3: weights as .weights.h5).
TRIAL_FILES = {"trial.json", "build_config.json", "checkpoint.weights.h5"}
SUMMARY_COLUMNS = (
    "trial", "status", "val_accuracy", "params", "epochs", "widths", "blocks",
    "dropout", "learning_rate", "weight_decay",
)


def is_worker():
    """Whether this process is a worker of a distributed search (by
    KerasTuner's variables): it trains trials, and writes only KerasTuner's
    files."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_PORT" in os.environ and "chief" not in tuner_id


def is_chief():
    """Whether this process is the chief of a distributed search (by
    KerasTuner's variables): it hands out trials, trains none, and writes
    the project as a single process does."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_PORT" in os.environ and "chief" in tuner_id


def project_problem(directory, project_name):
    """Why `directory` and `project_name` cannot name a project folder, or
    None. The name must be one folder name: `--overwrite` deletes the
    project folder, so `"."` or `""` would delete `--directory` with the
    other projects in it (and `""` put KerasTuner's files in
    `untitled_project`). An empty `directory` would be the current folder."""
    if not isinstance(directory, (str, os.PathLike)):
        return f"`directory` must be a path (a str or os.PathLike). Received: directory={directory!r}"
    return (empty_folder_problem(directory, "--directory", TUNING_ROOT)
            or folder_name_problem(project_name, "--project-name", "resnet (the search's folder)",
                                   "--directory"))


def search_settings(config, space, tuner, epochs_per_trial):
    """What a project's `search.json` records of a search (`config`, a
    `trial_config`), and a reload must match (`changed_settings`). The
    data folder is `$CIFAR10_DIR`'s where `config.data_dir` is None."""
    folder = python_folder(config.data_dir)
    return dict(
        tuner=tuner, epochs_per_trial=epochs_per_trial, **space,
        **{k: v for k, v in config.identity().items() if k not in TUNED_KEYS},
        data_dir=os.path.abspath(folder) if folder else None,
    )


def changed_settings(saved, settings):
    """The settings, but the data folder (which may move), that differ
    from `saved`, a `search.json`'s."""
    return sorted(k for k in settings if k != "data_dir" and saved.get(k) != settings[k])


def check_project(project_dir, settings, overwrite=False):
    """Refuses to continue a search of other settings in `project_dir`;
    records `settings` there (the chief or a single process only). With
    `overwrite`, deletes the search there first, and refuses to delete a
    folder that holds none."""
    check_creatable(project_dir)
    path = os.path.join(project_dir, SEARCH_FILE)
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as saved
    if os.path.isfile(path) and not is_worker():
        _hold_project(project_dir)  # before its settings are read, or it is deleted
    if os.path.isdir(project_dir) and os.listdir(project_dir) and not os.path.isfile(path) \
            and (overwrite or not is_worker()):
        what = "which --overwrite would delete" if overwrite else "where a search would write"
        raise ConfigError(
            f"{project_dir} holds no keras-resnet search (no {SEARCH_FILE}), {what}; "
            "choose another --project-name or --directory."
        )
    if overwrite:
        _check_overwritable(project_dir)
    elif os.path.isfile(path):
        _check_same_settings(project_dir, settings)
    if not is_worker():
        _record_search(project_dir, settings, overwrite)


def _check_overwritable(project_dir):
    """Refuses an `--overwrite` of a search that would delete the folder
    the command runs in, another folder than the one named (a link), or
    files that no search writes."""
    if os.path.isdir(project_dir) and holds_working_directory(project_dir):
        raise ConfigError(
            f"{project_dir} is the folder this command runs in, or holds it: --overwrite would "
            "delete it from under the command. Run it from another folder (cd out of the project "
            "first)."
        )
    if os.path.islink(project_dir):  # it cannot be renamed aside
        raise ConfigError(
            f"{project_dir} is a link to {os.path.realpath(project_dir)}: to replace that search, "
            "pass the folder itself (--directory, --project-name)."
        )
    if os.path.isdir(project_dir) and (foreign := files_no_search_writes(project_dir)):
        raise ConfigError(
            f"{project_dir} holds files that no search writes ({', '.join(foreign[:5])}), "
            "which --overwrite would delete; move them out or choose another --project-name."
        )


def _check_same_settings(project_dir, settings):
    """Refuses to continue the search in `project_dir` with other settings
    than its `search.json`'s; notes another data folder."""
    path = os.path.join(project_dir, SEARCH_FILE)
    saved = read_json_object(path, "The search's settings", "fix it, or pass --overwrite.")
    if changed := changed_settings(saved, settings):
        raise ConfigError(
            f"{project_dir} holds a search with other settings "
            f"({', '.join(changed)}); rerun it with the same settings to "
            "continue it, or choose another --project-name, or pass --overwrite."
        )
    # A data folder may move, so another one is noted, not refused (a
    # project from before it was recorded has no "data_dir").
    if "data_dir" in saved and saved["data_dir"] != settings.get("data_dir"):
        def named(folder):
            return folder or "TensorFlow Datasets' cifar10"
        print(f"Note: {project_dir} was searched on the data in {named(saved['data_dir'])}; "
              f"it goes on with {named(settings.get('data_dir'))}, and the trials of both are "
              "ranked together.", file=sys.stderr)


def _record_search(project_dir, settings, overwrite):
    """Deletes the search in `project_dir` first with `overwrite`; makes
    the folder, holds it, and writes `settings` to its `search.json`."""
    if overwrite and os.path.isdir(project_dir):  # here: KerasTuner would delete SEARCH_FILE too
        delete_for_overwrite(project_dir, project_dir, "search", "another --project-name")
    try:  # `can_create_folder` trusts `os.access`, which a root user or /sys can defeat
        os.makedirs(project_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"{project_dir} (--directory, --project-name) cannot be created ({e.strerror}); "
            "choose another --directory."
        ) from None
    _hold_project(project_dir)  # the folder --overwrite made, or a new one
    write_json_atomic(os.path.join(project_dir, SEARCH_FILE), settings)


def check_creatable(project_dir):
    """Refuses a project folder that cannot be created or written to.

    Raises:
        ConfigError: naming the folder and its flags.
    """
    if not can_create_folder(project_dir):
        raise ConfigError(
            f"{project_dir} (--directory, --project-name) cannot be created or written to "
            "as a folder."
        )


def _hold_project(project_dir):
    """Refuses a project that another search (not one of this search's
    workers, which hold nothing) is running now."""
    if not hold_folder(project_dir):
        raise ConfigError(
            f"{project_dir} is in use: another search is running there now. Wait for it to "
            "end, or choose another --project-name."
        )


def files_no_search_writes(project_dir):
    """The paths, relative to `project_dir`, of what neither this command
    nor KerasTuner writes there (its `oracle.json`, its tuners' `<id>.json`
    and `trial_*` folders of `TRIAL_FILES`), which `--overwrite` must not
    delete. A link counts as foreign."""
    ours = {SEARCH_FILE, SUMMARY_FILE, BEST_CONFIG_FILE, "oracle.json"}
    tuner_state = re.compile(r"(tuner\d+|chief|worker[\w-]*)\.json")
    foreign = []
    for name in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, name)
        if os.path.islink(path):
            foreign.append(name)
        elif os.path.isdir(path) and name.startswith("trial_"):
            foreign += [os.path.join(name, inner) for inner in sorted(os.listdir(path))
                        if os.path.islink(os.path.join(path, inner))
                        or not os.path.isfile(os.path.join(path, inner))
                        or not (inner in TRIAL_FILES or is_partial(inner))]
        elif os.path.isdir(path) or not (name in ours or tuner_state.fullmatch(name)
                                         or is_partial(name) or _is_tuner_file(path)):
            foreign.append(name)
    return foreign


def _is_tuner_file(path):
    """Whether `path` is a `<tuner id>.json` of KerasTuner's (a worker may
    have any id, `gpu0`): what `Tuner.save` writes there, an empty object."""
    if not path.endswith(".json"):
        return False
    try:
        with open(path) as f:
            return json.load(f) == {}
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------
# Results.


def _status(trial, params):
    if trial.status == "COMPLETED":
        return "completed"
    if trial.status == "FAILED":
        return "rejected" if params > PARAM_CAP else "failed"
    return trial.status.lower()  # running: interrupted, continued on a rerun


def summarize(tuner, hypermodel):
    """One row per trial, in trial order (see `SUMMARY_COLUMNS`)."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id)):
        config = hypermodel.trial_config(trial.hyperparameters.copy())
        if trial.metrics.exists("params"):
            params = int(trial.metrics.get_last_value("params"))
        else:  # rejected or failed
            params = hypermodel.count_params(config)
        epochs = trial.metrics.get_last_value("epochs") if trial.metrics.exists("epochs") else None
        rows.append({
            "trial": trial.trial_id,
            "status": _status(trial, params),
            "val_accuracy": None if trial.score is None else round(float(trial.score), 4),
            "params": params,
            "epochs": None if epochs is None else int(epochs),
            "widths": "/".join(map(str, config.stage_filters)),
            "blocks": "/".join(map(str, config.stage_blocks)),
            "dropout": config.dropout,
            "learning_rate": round(config.learning_rate, 5),
            "weight_decay": round(config.weight_decay, 6),
            "config": {k: getattr(config, k) for k in BEST_CONFIG_KEYS},
            "score": trial.score,  # unrounded: two trials may print alike
        })
    return rows


def first_failure(tuner, rows):
    """The error of the first failed trial, in a sentence (KerasTuner keeps
    each failed trial's traceback in its `trial.json`), or None."""
    failed = [row["trial"] for row in rows if row["status"] == "failed"]
    if not failed:
        return None
    message = (tuner.oracle.trials[failed[0]].message or "").strip()
    last_line = message.splitlines()[-1] if message else "no message recorded"
    return f"Trial {failed[0]} failed with: {last_line} (its trial.json holds the traceback)."


def ranked_trials(rows):
    """The completed rows, best first, as KerasTuner ranks them (by the
    score itself, not the rounded `val_accuracy`; ties in trial order)."""
    return sorted((row for row in rows if row["status"] == "completed"),
                  key=lambda row: -row["score"])


def format_table(rows):
    """The rows of `summarize` as a text table of `SUMMARY_COLUMNS`, right
    aligned, `-` for a missing value."""
    cells = [SUMMARY_COLUMNS] + [
        tuple("-" if row[c] is None else str(row[c]) for c in SUMMARY_COLUMNS) for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(SUMMARY_COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def write_results(rows, project_dir):
    """Writes `summary.csv` and, if a trial completed, `best_config.json`.

    Args:
        rows: list of dicts. The rows of `summarize`.
        project_dir: str. The project folder.

    Returns:
        The best row (`ranked_trials`), or `None` if no trial completed.
    """
    def write_summary(partial):  # whole, even if a Ctrl-C comes
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(os.path.join(project_dir, SUMMARY_FILE), write_summary)
    ranked = ranked_trials(rows)
    if not ranked:
        return None
    best = ranked[0]
    TrainConfig.from_dict(best["config"], source=BEST_CONFIG_FILE)  # train.py takes it
    write_json_atomic(os.path.join(project_dir, BEST_CONFIG_FILE), best["config"])
    return best
