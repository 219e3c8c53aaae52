"""Hyperparameter search with KerasTuner: `python -m keras_resnet.tune`.

The search space covers the width and the number of blocks of each stage of
a base preset, the dropout, the learning rate and the weight decay. Trials
are scored by `val_accuracy` on a validation split cut from the training set
(the test set is never used). No network over `PARAM_CAP` (5,000,000)
parameters is trained: such a configuration is rejected before `fit` with
`keras_tuner.errors.FailedTrialError`, counted, and the search goes on.

The project folder (`--directory`/`--project-name`) holds KerasTuner's state,
`search.json` (the settings of the search), `summary.csv` (one row per trial)
and `best_config.json` (TrainConfig keys: `python train.py --config
best_config.json` trains the best configuration). Rerunning the same command
continues an interrupted search. Distributed search uses KerasTuner's
chief/worker mode (see docs/tuning.md). Ends with one JSON line; bad input
exits with status 2 and one line.

This module makes the tuner, runs the search (a distributed search's
chief checks its address first) and is its command line; the space and
`ResNetHyperModel` are in `keras_resnet.hypermodel`, the project folder
and its files in `keras_resnet.tune_project`.
"""

import argparse
import dataclasses
import errno
import json
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Keras-free imports only: flags and settings are checked before Keras and a
# backend load (`ResNetHyperModel` and the search load them).
from keras_resnet import cli  # noqa: E402
from keras_resnet.checks import check_bool  # noqa: E402
from keras_resnet.checks import check_choice  # noqa: E402
from keras_resnet.checks import check_int  # noqa: E402
from keras_resnet.config import MAX_EPOCHS  # noqa: E402
from keras_resnet.config import ConfigError  # noqa: E402
from keras_resnet.config import TrainConfig  # noqa: E402
from keras_resnet.config import blame_environment  # noqa: E402
from keras_resnet.config import check_train_config  # noqa: E402
from keras_resnet.config import prepare_environment  # noqa: E402
from keras_resnet.data import DATA_DIR_ENV  # noqa: E402
from keras_resnet.data import DataError  # noqa: E402
from keras_resnet.folder_lock import release_folder  # noqa: E402
from keras_resnet.hypermodel import search_space  # noqa: E402
from keras_resnet.paths import read_json_object  # noqa: E402
from keras_resnet.presets import PARAM_CAP  # noqa: E402
from keras_resnet.presets import PRESETS  # noqa: E402
from keras_resnet.tune_project import BEST_CONFIG_FILE  # noqa: E402
from keras_resnet.tune_project import SEARCH_FILE  # noqa: E402
from keras_resnet.tune_project import SUMMARY_FILE  # noqa: E402
from keras_resnet.tune_project import TUNING_ROOT  # noqa: E402
from keras_resnet.tune_project import changed_settings  # noqa: E402
from keras_resnet.tune_project import check_creatable  # noqa: E402
from keras_resnet.tune_project import check_project  # noqa: E402
from keras_resnet.tune_project import first_failure  # noqa: E402
from keras_resnet.tune_project import format_table  # noqa: E402
from keras_resnet.tune_project import is_chief  # noqa: E402
from keras_resnet.tune_project import is_worker  # noqa: E402
from keras_resnet.tune_project import project_problem  # noqa: E402
from keras_resnet.tune_project import ranked_trials  # noqa: E402
from keras_resnet.tune_project import search_settings  # noqa: E402
from keras_resnet.tune_project import summarize  # noqa: E402
from keras_resnet.tune_project import write_results  # noqa: E402

TUNERS = ("hyperband", "random", "bayesian")
# Seeds numpy (and scikit-learn) take: 0 to 2**32 - 1.
NUMPY_SEEDS = 2**32


def __getattr__(name):
    # Importable from here, as before it moved; Keras loads on first use.
    if name == "ResNetHyperModel":
        from keras_resnet.hypermodel import ResNetHyperModel

        return ResNetHyperModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tuner_seed(seed, tuner):
    """KerasTuner's seed for a search of `seed` (0 to 2**32 - 1).

    It is `seed + 1`, as KerasTuner takes 0 for "no seed". The Bayesian
    oracle seeds numpy and scikit-learn with it too, which take seeds below
    2**32: there the last seed, 2**32 - 1, wraps around to 1 (the
    hyperparameters seed 0 draws; its split and weights are its own). Every
    other seed and tuner gets the seed it always had, so its search is the
    same as before.
    """
    seed += 1
    if tuner == "bayesian" and seed >= NUMPY_SEEDS:
        seed -= NUMPY_SEEDS - 1
    return seed


def make_tuner(hypermodel, tuner="hyperband", max_trials=20, epochs_per_trial=10,
               directory=TUNING_ROOT, project_name="resnet", overwrite=False):
    """Creates (or reloads, to continue a search) a KerasTuner tuner.

    Rejected trials count towards `max_trials` but never stop the search.
    Hyperband brackets repeat until `max_trials` trials (each round of
    successive halving is a trial), with `epochs_per_trial` as its maximum
    epochs.

    Args:
        hypermodel: `ResNetHyperModel`.
        tuner: str. One of `TUNERS`. Defaults to `"hyperband"`.
        max_trials: int. Defaults to `20`.
        epochs_per_trial: int. Defaults to `10`.
        directory: str. Defaults to `TUNING_ROOT` (`"runs/tuning"`).
        project_name: str. The project folder in `directory`: one folder
            name (see `project_problem`). Defaults to `"resnet"`.
        overwrite: bool. Start over instead of continuing. Defaults to `False`.

    Returns:
        A `keras_tuner.Hyperband`, `RandomSearch` or `BayesianOptimization`.

    Raises:
        ConfigError: `tuner` is not one of `TUNERS`; `max_trials`,
            `epochs_per_trial`, `overwrite` or `hypermodel` of the wrong
            type or range; `project_name` is not one folder name, or the project
            holds a search of other settings (KerasTuner would go on with
            those), or `overwrite=True` and it is not empty (`search`
            starts a search over, checking what it deletes).
    """
    _check_tuner_arguments(tuner, max_trials, epochs_per_trial, overwrite)
    if problem := project_problem(directory, project_name):  # KerasTuner's overwrite deletes it
        raise ConfigError(problem)
    if not isinstance(getattr(hypermodel, "config", None), TrainConfig):
        received = ("a TrainConfig" if isinstance(hypermodel, TrainConfig)
                    else f"hypermodel={hypermodel!r}")
        raise ConfigError("`hypermodel` must be a ResNetHyperModel(config, **space), from "
                          f"keras_resnet.hypermodel. Received: {received}")
    _check_reload(hypermodel, tuner, epochs_per_trial, os.path.join(directory, project_name), overwrite)
    return _new_tuner(hypermodel, tuner, max_trials, epochs_per_trial, directory, project_name,
                      overwrite)


def _check_tuner_arguments(tuner, max_trials, epochs_per_trial, overwrite):
    """What `make_tuner` and `search` take alike, checked before anything
    is written (KerasTuner takes 0 trials for "no limit")."""
    if tuner not in TUNERS:
        raise ConfigError(f"Unknown tuner {tuner!r}. Choose one of {list(TUNERS)}.")
    check_int("max_trials", max_trials)
    check_int("epochs_per_trial", epochs_per_trial, maximum=MAX_EPOCHS)  # else named as --epochs
    check_bool("overwrite", overwrite)


def _new_tuner(hypermodel, tuner, max_trials, epochs_per_trial, directory, project_name, overwrite):
    """The tuner of `make_tuner`, its project checked. `search` checks it
    with `check_project` and comes here directly: a worker of a search
    started over (`--overwrite`) may get here before its chief has
    rewritten `search.json`."""
    import keras_tuner

    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective("val_accuracy", direction="max"),
        seed=_tuner_seed(hypermodel.config.seed, tuner),
        # Over-cap trials fail (cheaply); none of them may end the search.
        max_consecutive_failed_trials=max_trials + 1,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )
    if tuner == "hyperband":
        result = keras_tuner.Hyperband(
            max_epochs=epochs_per_trial, factor=3, hyperband_iterations=None, **common
        )
        result.oracle.max_trials = max_trials
    elif tuner == "random":
        result = keras_tuner.RandomSearch(max_trials=max_trials, **common)
    else:
        result = keras_tuner.BayesianOptimization(
            max_trials=max_trials, num_initial_points=max(3, max_trials // 4), **common
        )
    return result


def trial_config(config, epochs_per_trial):
    """The settings each trial trains with: `config` for `epochs_per_trial`
    epochs, augmenting on the host, exporting nothing."""
    return dataclasses.replace(config, epochs=epochs_per_trial, augment_on="host", export=False)


def _check_reload(hypermodel, tuner, epochs_per_trial, project_dir, overwrite):
    """For a tuner made directly (`search` checks its project first):
    KerasTuner reloads a project's space, preset and tuner whatever
    `hypermodel` says (new choices ignored without a word, another preset
    failing as the weights load), and its `overwrite` deletes the folder
    whatever it holds."""
    if not (os.path.isdir(project_dir) and os.listdir(project_dir)):
        return
    if overwrite:
        raise ConfigError(
            f"{project_dir} is not empty, and make_tuner(overwrite=True) would delete it whatever "
            "it holds: start a search over with search(..., overwrite=True), which checks what it "
            "deletes, or choose another project_name."
        )
    path = os.path.join(project_dir, SEARCH_FILE)
    if os.path.isfile(path):
        saved = read_json_object(path, "The search's settings", "fix it, or start the search over.")
        settings = search_settings(trial_config(hypermodel.config, epochs_per_trial),
                                   hypermodel.space, tuner, epochs_per_trial)
        if changed := changed_settings(saved, settings):
            raise ConfigError(
                f"{project_dir} holds a search with other settings ({', '.join(changed)}) than "
                "this tuner and hypermodel, and KerasTuner would go on with the saved ones: "
                f"give the saved values ({SEARCH_FILE}), or choose another project_name."
            )


def _oracle_address_problem():
    """Why the chief cannot serve KerasTuner's oracle at
    `$KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT`, or None.

    KerasTuner's gRPC server binds with SO_REUSEPORT: on a port that another
    chief holds it starts without a word, and the kernel shares the workers
    of both searches between the two (each trains the other search's
    trials, with its own data, its checkpoints in its own folder). A plain
    bind, as here, is refused there; and an address of no machine is one
    line, not gRPC's traceback after the project is written.
    """
    host, port = os.environ["KERASTUNER_ORACLE_IP"], int(os.environ["KERASTUNER_ORACLE_PORT"])
    address = f"{host}:{port}"
    problem = cli.listen_problem(host.strip("[]"), port)  # gRPC takes IPv6 in brackets, `[::]`
    if problem is None:
        return None
    if problem.errno == errno.EADDRINUSE:
        return (f"--oracle-port (or $KERASTUNER_ORACLE_PORT) {port}: {address} is in "
                "use (another search's chief?); give this search's chief and workers "
                "another --oracle-port.")
    return (f"--oracle-ip (or $KERASTUNER_ORACLE_IP) {host!r}: the chief cannot listen at {address} "
            f"({problem.strerror or problem}); give an address of this machine (0.0.0.0 for every "
            "interface).")


# --------------------------------------------------------------------------
# The search.


def search(config, tuner="hyperband", max_trials=20, epochs_per_trial=10,
           directory=TUNING_ROOT, project_name="resnet", overwrite=False,
           verbose=2, top=3, **space):
    """Runs (or continues) a search and writes its results.

    Args:
        config: `TrainConfig`, the base settings of every trial (its
            `validation_size` must be positive).
        tuner, max_trials, epochs_per_trial, directory, project_name,
            overwrite: see `make_tuner`.
        verbose: `fit` verbosity, and KerasTuner's report of each trial
            (none at 0). Defaults to `2` (a line per epoch).
        top: int. How many of the best trials to print. Defaults to `3`.
        **space: the search space: `search_space` arguments (`widths`,
            `blocks`, `dropouts`, `learning_rate`, `weight_decay`).

    Returns:
        A dict of the results (the CLI's JSON line). A worker returns its own
        counts; the chief and a single process, those of the whole search.

    Raises:
        ConfigError, DataError: bad settings or data (nothing written).
        ValueError: an argument of the wrong type or out of range, named.
    """
    start = time.perf_counter()
    # Before anything is written: a project that recorded a bad call's
    # settings refuses the corrected one. KerasTuner takes 0 trials for "no limit".
    check_train_config(config)
    _check_tuner_arguments(tuner, max_trials, epochs_per_trial, overwrite)
    check_choice("verbose", verbose, (0, 1, 2, "auto"))  # as `fit` takes it
    check_int("top", top, minimum=0)
    config = trial_config(config, epochs_per_trial)
    if not config.validation_size:
        raise ConfigError(
            "--validation-size must be positive: trials are scored on a "
            f"validation split of the training set. Received: {config.validation_size!r}"
        )
    config.validate()
    if problem := project_problem(directory, project_name):
        raise ConfigError(problem)
    if is_chief() and "KERASTUNER_ORACLE_IP" in os.environ and (
            problem := _oracle_address_problem()):
        raise ConfigError(problem)
    space = search_space(config.preset, **space)
    project_dir = os.path.join(directory, project_name)
    check_creatable(project_dir)  # before Keras and the data load (check_project checks again)
    settings = search_settings(config, space, tuner, epochs_per_trial)
    # Settings checked: now load Keras, and the data before the project
    # records these settings (a split the data cannot give would otherwise
    # leave a project that refuses the corrected command).
    from keras_resnet.hypermodel import ResNetHyperModel
    from keras_resnet.training import prepare_data
    from keras_resnet.training import run_globals

    hypermodel = ResNetHyperModel(config, **space)
    _refuse_a_space_wholly_over_the_cap(hypermodel)
    data = {}
    if not is_chief():  # the chief hands out trials and trains nothing
        _, data["train"], data["validation"] = prepare_data(config)
    try:  # check_project holds the project folder (the chief's, or a single process's)
        check_project(project_dir, settings, overwrite)
        try:
            tuner_ = _new_tuner(hypermodel, tuner, max_trials, epochs_per_trial,
                                directory, project_name, overwrite=False)  # done by check_project
        except json.JSONDecodeError as e:  # a file of KerasTuner's, cut short
            raise ConfigError(
                f"{project_dir}: KerasTuner's saved search cannot be read (JSONDecodeError: {e}); "
                "pass --overwrite to start the search over, or choose another --project-name."
            ) from None

        try:
            with run_globals():  # each trial's training wrapper float32, as train.py's
                tuner_.search(epochs=epochs_per_trial, verbose=verbose, **data)
        except KeyboardInterrupt:
            if not is_worker():  # the table so far; the interrupted trial is `running`
                write_results(summarize(tuner_, hypermodel), project_dir)
            raise
        results = {"tuner_id": tuner_.tuner_id, "trained": hypermodel.trained,
                   "rejected_here": hypermodel.rejected}
        if is_worker():
            results["wall_seconds"] = round(time.perf_counter() - start, 1)
        else:
            results.update(_write_and_print_results(tuner_, hypermodel, project_dir, top, start))
        return results
    finally:
        release_folder(project_dir)


def _refuse_a_space_wholly_over_the_cap(hypermodel):
    """KerasTuner builds the smallest network of the space first: refuse it
    before the data loads and the project records a space that no trial
    can train."""
    config, space = hypermodel.config, hypermodel.space
    smallest = dataclasses.replace(config, stage_filters=[w[0] for w in space["widths"]],
                                   stage_blocks=[b[0] for b in space["blocks"]])
    if (params := hypermodel.count_params(smallest)) > PARAM_CAP:
        raise ConfigError(
            f"Every configuration of this space is over the cap: the smallest (widths "
            f"{smallest.stage_filters}, blocks {smallest.stage_blocks}) has {params:,} "
            f"parameters, over {PARAM_CAP:,}. Give narrower --widths or fewer --blocks."
        )


def _write_and_print_results(tuner_, hypermodel, project_dir, top, start):
    """The chief's or a single process's end of `search`: writes the
    project's `summary.csv` and `best_config.json`, prints the table and
    the `top` best trials; returns the whole search's part of the results
    (`start`: when the search began)."""
    rows = summarize(tuner_, hypermodel)
    best = write_results(rows, project_dir)
    print(format_table(rows))
    ranked = ranked_trials(rows)[:top]
    if ranked:
        print(f"Top {len(ranked)}:")
    for r in ranked:
        print(f"  trial {r['trial']}: val_accuracy {r['val_accuracy']:.4f}, "
              f"{r['params']:,} parameters, widths {r['widths']}, blocks {r['blocks']}")
    statuses = [r["status"] for r in rows]
    results = dict(
        project_dir=project_dir,
        trials=len(rows),
        completed=statuses.count("completed"),
        rejected=statuses.count("rejected"),
        failed=statuses.count("failed"),
        best_trial=best and best["trial"],
        best_val_accuracy=best and best["val_accuracy"],
        best_params=best and best["params"],
        best_config=best and os.path.join(project_dir, BEST_CONFIG_FILE),
        summary_csv=os.path.join(project_dir, SUMMARY_FILE),
        top=[{k: r[k] for k in ("trial", "val_accuracy", "params")} for r in ranked],
        wall_seconds=round(time.perf_counter() - start, 1),
        failure=first_failure(tuner_, rows),
    )
    if best:
        print(f"Train the best: python train.py --config {shlex.quote(results['best_config'])}")
    return results


# --------------------------------------------------------------------------
# Command line.


def _stage_lists(text):
    """`"32,64/64,128"` -> `[[32, 64], [64, 128]]` (a list per stage)."""
    try:
        lists = [[int(v) for v in part.replace(",", " ").split()] for part in text.split("/")]
    except ValueError:
        lists = None
    if not lists or not all(lists):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, stages separated by '/', got {text!r}"
        )
    return lists


def build_parser():
    p = cli.ArgumentParser(prog="python -m keras_resnet.tune", description=__doc__.splitlines()[0],
                           trains=True)
    p.add_argument("--tuner", choices=TUNERS, default="hyperband", help="search algorithm (default hyperband)")
    p.add_argument("--max-trials", type=cli.positive_int, default=20, help="trials in all, rejected ones included (default 20)")
    p.add_argument("--epochs-per-trial", type=cli.int_in_range(1, MAX_EPOCHS), default=10, help="epochs of a trial; Hyperband's maximum (default 10)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="best", help="base network: stem, strides, stage count (default best)")
    p.add_argument("--widths", type=_stage_lists, help="width choices per stage, e.g. 32,64/64,128/128,256 (default: the preset's x0.5-1.5)")
    p.add_argument("--blocks", type=_stage_lists, help="block choices, for every stage (1,2,3, the default) or per stage (1/1,2/1,2)")
    p.add_argument("--dropouts", type=cli.float_list, help="dropout choices (default 0,0.1,0.2,0.3)")
    p.add_argument("--train-size", type=cli.positive_int, help="use the first N training images (default all)")
    p.add_argument("--validation-size", type=cli.positive_int, help="validation images cut from them (default 10%% of --train-size; 5000 without it)")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="default 128")
    p.add_argument("--seed", type=int, default=0, help="seed of the search, the split and the weights (default 0)")
    p.add_argument("--data-dir", type=cli.path, help=f"python-version CIFAR-10 folder (default ${DATA_DIR_ENV}, else tfds)")
    p.add_argument("--directory", type=cli.path, default=TUNING_ROOT, help=f"root of the project folders (default {TUNING_ROOT})")
    p.add_argument("--project-name", default="resnet", help="project folder in --directory (default resnet)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of continuing the project")
    p.add_argument("--tuner-id", help="distributed: 'chief' or a worker name (default $KERASTUNER_TUNER_ID)")
    p.add_argument("--oracle-ip", help="distributed: the chief's address (default $KERASTUNER_ORACLE_IP, else 127.0.0.1)")
    p.add_argument("--oracle-port", type=cli.port, help="distributed: the chief's port (default $KERASTUNER_ORACLE_PORT)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                   help="fit verbosity; 0 also hides KerasTuner's report of each trial (default 2)")
    return p


def _distributed_env(args, parser):
    """Sets KerasTuner's variables from the flags; checks they go together."""
    for flag, name in (("tuner_id", "KERASTUNER_TUNER_ID"),
                       ("oracle_ip", "KERASTUNER_ORACLE_IP"),
                       ("oracle_port", "KERASTUNER_ORACLE_PORT")):
        if getattr(args, flag) is not None:
            os.environ[name] = str(getattr(args, flag))
    has_id = "KERASTUNER_TUNER_ID" in os.environ
    has_port = "KERASTUNER_ORACLE_PORT" in os.environ
    if has_id != has_port:
        parser.error(
            "distributed search needs both a tuner id and the oracle port "
            "(--tuner-id/$KERASTUNER_TUNER_ID, --oracle-port/$KERASTUNER_ORACLE_PORT); "
            f"got tuner id {os.environ.get('KERASTUNER_TUNER_ID')!r}, "
            f"port {os.environ.get('KERASTUNER_ORACLE_PORT')!r}."
        )
    if "KERASTUNER_ORACLE_IP" in os.environ and not has_port:  # KerasTuner raises deep inside
        parser.error(
            "the oracle address needs its port: pass --oracle-port (or $KERASTUNER_ORACLE_PORT) "
            f"with --oracle-ip {os.environ['KERASTUNER_ORACLE_IP']!r}, and a --tuner-id."
        )
    if has_port:
        try:
            cli.port(os.environ["KERASTUNER_ORACLE_PORT"])
        except argparse.ArgumentTypeError as e:  # KerasTuner waits for it without a word
            parser.error(f"--oracle-port (or $KERASTUNER_ORACLE_PORT) {e}.")
        os.environ.setdefault("KERASTUNER_ORACLE_IP", "127.0.0.1")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _distributed_env(args, parser)
    space = {k: getattr(args, k) for k in ("widths", "dropouts") if getattr(args, k)}
    if args.blocks:
        space["blocks"] = args.blocks[0] if len(args.blocks) == 1 else args.blocks
    train_images = args.train_size or 50_000
    data_dir, from_environment = args.data_dir, {}
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir, from_environment = os.environ[DATA_DIR_ENV], {"data_dir": DATA_DIR_ENV}
    try:
        config = TrainConfig(
            preset=args.preset,
            batch_size=args.batch_size,
            train_size=args.train_size,
            validation_size=args.validation_size or max(1, train_images // 10),
            seed=args.seed,
            data_dir=data_dir,
        )
        prepare_environment(config)
        results = search(
            config, tuner=args.tuner, max_trials=args.max_trials,
            epochs_per_trial=args.epochs_per_trial, directory=args.directory,
            project_name=args.project_name, overwrite=args.overwrite,
            verbose=args.verbose, **space,
        )
    except (ConfigError, DataError) as e:
        parser.exit(2, f"{parser.prog}: error: {blame_environment(str(e), from_environment)}\n")
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Finished trials are kept in "
            f"{os.path.join(args.directory, args.project_name)} (listed in {SUMMARY_FILE}); "
            "rerun the same command to continue the search.",
            file=sys.stderr,
        )
        return 130
    print(json.dumps(results))
    if results.get("completed") == 0:  # the chief or a single process: no best to train
        sentences = [f"no trial completed ({results['failed']} failed, {results['rejected']} "
                     "rejected over the cap), so there is no best configuration.",
                     results["failure"], f"See {results['summary_csv']}."]
        print(f"{parser.prog}: " + " ".join(filter(None, sentences)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "python -m keras_resnet.tune"))
