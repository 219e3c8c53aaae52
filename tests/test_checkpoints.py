import json
import os

import keras
import numpy as np
import pytest

from callbacks import AtomicModelCheckpoint
from callbacks import CheckpointSchedule
from callbacks import ScheduledBackupAndRestore
from callbacks import BackupUnreadable
from callbacks import backup_epochs
from callbacks import recover_backup
from callbacks import roll_back_backup
from keras_resnet import load_model
from tests.conftest import poison_logits_at
from tests.conftest import tiny_model_and_batch


class FakeMetric(keras.callbacks.Callback):
    """Puts a chosen value of `name` into each epoch's logs and remembers
    the weights."""

    def __init__(self, scores, name="score"):
        super().__init__()
        self.scores, self.name, self.weights = scores, name, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = self.scores[epoch]
        self.weights.append(self.model.get_weights())


class FilesSeen(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(os.path.exists(self.path))


def fit_with_schedule(tmp_path, min_seconds, scores, stop=()):
    """`stop`: callbacks placed before the schedule, as train.py places
    those that stop training."""
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric(scores), CheckpointSchedule(min_seconds)
    best, last = str(tmp_path / "best.keras"), str(tmp_path / "last.keras")
    seen = FilesSeen(last)
    model.fit(x, y, batch_size=8, epochs=len(scores), verbose=0, callbacks=[
        metric, *stop, schedule,
        AtomicModelCheckpoint(best, monitor="score", schedule=schedule, mode="max"),
        AtomicModelCheckpoint(last, schedule=schedule),
        ScheduledBackupAndRestore(str(tmp_path / "backup"), schedule, delete_checkpoint=False),
        seen,
    ])
    return metric.weights, load_model(best).get_weights(), load_model(last).get_weights(), seen.seen


def test_spaced_checkpoints_write_at_the_end_and_keep_the_best_epoch(tmp_path):
    weights, best, last, seen = fit_with_schedule(tmp_path, 1e9, [0.1, 0.9, 0.3, 0.2])
    assert seen == [False, False, False, True]  # only after the last epoch
    assert all(np.array_equal(a, b) for a, b in zip(best, weights[1]))  # epoch 2's weights
    assert all(np.array_equal(a, b) for a, b in zip(last, weights[3]))
    assert not all(np.array_equal(a, b) for a, b in zip(best, last))
    with open(tmp_path / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 4
    assert not any(name.startswith(".partial") for name in os.listdir(tmp_path))


def test_zero_seconds_checkpoints_every_epoch(tmp_path):
    weights, best, _, seen = fit_with_schedule(tmp_path, 0, [0.1, 0.2, 0.9, 0.9])
    assert seen == [True, True, True, True]
    # The first epoch of the best score: a later one that only ties it
    # does not replace it.
    assert all(np.array_equal(a, b) for a, b in zip(best, weights[2]))


def test_a_run_stopped_early_checkpoints_its_last_epoch(tmp_path):
    # Reaching the target ends the run at epoch 2 of 4, long before the
    # interval: its checkpoints and backup must still hold that epoch.
    from callbacks import StopAtAccuracy

    weights, best, last, seen = fit_with_schedule(
        tmp_path, 1e9, [0.1, 0.9, 0.3, 0.2], stop=[StopAtAccuracy(0.5, monitor="score")])
    assert seen == [False, True]
    assert all(np.array_equal(a, b) for a, b in zip(best, weights[1]))
    assert all(np.array_equal(a, b) for a, b in zip(last, weights[1]))
    with open(tmp_path / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 2


def test_the_interval_counts_from_the_last_checkpoint(monkeypatch):
    # With 5 s between checkpoints, epochs ending at 6, 8 and 12 s: the
    # first writes, the second is 2 s after it and waits, the third is due.
    from types import SimpleNamespace

    from callbacks import checkpoint

    clock = iter([0.0, 6.0, 8.0, 12.0])
    monkeypatch.setattr(checkpoint, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    model, _, _ = tiny_model_and_batch()
    schedule = CheckpointSchedule(5)
    schedule.set_model(model)
    schedule.set_params({"epochs": 10})
    schedule.on_train_begin()
    due = []
    for epoch in range(3):
        schedule.on_epoch_end(epoch)
        due.append(schedule.due)
    assert due == [True, False, True]


def test_a_best_epoch_waiting_in_memory_is_written_at_the_next_checkpoint(tmp_path, monkeypatch):
    # Checkpoints 5 s apart, epochs ending at 1, 2, 6 and 7 s: epoch 2, the
    # best, ends between two checkpoints; epoch 3 does not improve but is
    # due, and writes epoch 2's weights then, not only when the run ends
    # (a kill in between lost them).
    from types import SimpleNamespace

    from callbacks import checkpoint

    clock = iter([0.0, 1.0, 2.0, 6.0, 7.0])
    monkeypatch.setattr(checkpoint, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric([0.1, 0.9, 0.3, 0.2]), CheckpointSchedule(5)
    best = tmp_path / "best.keras"
    kept = []  # best.keras's weights at each epoch end, None before it exists

    def record(epoch, logs):
        kept.append(load_model(str(best)).get_weights() if best.exists() else None)

    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[
        metric, schedule, AtomicModelCheckpoint(str(best), monitor="score", schedule=schedule, mode="max"),
        keras.callbacks.LambdaCallback(on_epoch_end=record),
    ])
    assert kept[:2] == [None, None]
    for weights in kept[2:]:
        assert all(np.array_equal(a, b) for a, b in zip(weights, metric.weights[1]))


def test_an_epoch_end_serializes_the_model_once_for_both_checkpoints(tmp_path):
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    saves = []
    save = model.save
    model.save = lambda path, **kwargs: (saves.append(os.path.basename(path)), save(path, **kwargs))
    metric, schedule = FakeMetric([0.1, 0.9, 0.3]), CheckpointSchedule(0)
    best, last = tmp_path / "best.keras", tmp_path / "last.keras"
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        metric, schedule,
        AtomicModelCheckpoint(str(best), monitor="score", schedule=schedule, mode="max"),
        AtomicModelCheckpoint(str(last), schedule=schedule),
    ])
    # Epochs 1 and 2 improve: best.keras is written and last.keras copies
    # it. Epoch 3 does not: last.keras is written.
    assert saves == [".partial.best.keras", ".partial.best.keras", ".partial.last.keras"]
    assert all(np.array_equal(a, b) for a, b in zip(load_model(str(best)).get_weights(), metric.weights[1]))
    assert all(np.array_equal(a, b) for a, b in zip(load_model(str(last)).get_weights(), metric.weights[2]))
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]


@pytest.mark.parametrize("monitor, metrics, best_epoch", [
    ("loss", [], 2),  # lowest: before, a loss was refused (the highest was kept)
    ("mae", ["mae"], 2),  # lowest: before, the worst epoch was kept without a word
    ("accuracy", ["accuracy"], 1),  # highest
])
def test_the_best_epoch_goes_the_monitored_metrics_way(tmp_path, monitor, metrics, best_epoch):
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    model.compile("sgd", "categorical_crossentropy", metrics=metrics)
    logs = FakeMetric([0.5, 0.9, 0.1, 0.3], name=monitor)
    best = str(tmp_path / "best.keras")
    model.fit(x, y, batch_size=8, epochs=4, verbose=0,
              callbacks=[logs, AtomicModelCheckpoint(best, monitor=monitor)])
    saved = load_model(best).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, logs.weights[best_epoch]))


def test_a_metric_of_no_known_direction_asks_for_a_mode(tmp_path):
    model, x, y = tiny_model_and_batch()
    logs = FakeMetric([0.5])  # at the first epoch end, as documented (it waited for a second)
    with pytest.raises(ValueError, match='higher or a lower `score`.*mode="max" or mode="min"'):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
            logs, AtomicModelCheckpoint(str(tmp_path / "best.keras"), monitor="score")])


def test_best_epoch_waiting_in_memory_is_written_when_training_diverges(tmp_path):
    from callbacks import StopOnDivergence, TrainingDiverged

    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric([0.9, 0.1, 0.5]), CheckpointSchedule(1e9)
    best = AtomicModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="score", schedule=schedule, mode="max")
    try:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[StopOnDivergence(), metric, schedule, best, poison_logits_at(2)])
    except TrainingDiverged:
        best.flush()
    else:
        raise AssertionError("training did not diverge")
    kept = load_model(str(tmp_path / "best.keras")).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, metric.weights[0]))


def back_up_epochs(tmp_path, count=3):
    """Fits `count` epochs backing up after each (the latest backup and the
    one before it); returns the backup folder, the model and each epoch's
    weights."""
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric([0.1, 0.2, 0.3][:count]), CheckpointSchedule(0)
    backup = str(tmp_path / "backup")
    model.fit(x, y, batch_size=8, epochs=count, verbose=0, callbacks=[
        metric, schedule,
        ScheduledBackupAndRestore(backup, schedule, double_checkpoint=True, delete_checkpoint=False),
    ])
    return backup, model, metric.weights


def backup_weights_equal(model, backup, weights):
    model.load_weights(os.path.join(backup, "latest.weights.h5"))
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))


def test_a_stop_while_backing_up_leaves_the_last_backup_whole(tmp_path, capsys):
    # Keras writes the weights in place: Ctrl-C there left a file that
    # h5py reads but Keras cannot load (the layers after the stop missing).
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric([0.1, 0.2]), CheckpointSchedule(0)
    backup = tmp_path / "backup"
    layer = model.layers[len(model.layers) // 2]
    save_own_variables = layer.save_own_variables

    def stopped_in_epoch_2(store):
        if len(metric.weights) == 2:
            raise KeyboardInterrupt
        save_own_variables(store)

    layer.save_own_variables = stopped_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
            metric, schedule,
            ScheduledBackupAndRestore(str(backup), schedule, double_checkpoint=True),
        ])
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    assert backup_weights_equal(model, str(backup), metric.weights[0])  # as epoch 1 left it
    assert recover_backup(str(backup)) == 1
    assert capsys.readouterr().err == ""  # nothing to go back from


@pytest.mark.parametrize("broken", ["latest.weights.h5", "training_metadata.json"])
def test_an_unreadable_backup_goes_back_to_the_one_before_it_up_front(tmp_path, capsys, broken):
    # Keras would go back only as `fit` begins, after the data stream has
    # been started at the unreadable backup's epoch.
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    backup, model, weights = back_up_epochs(tmp_path)
    path = os.path.join(backup, broken)
    with open(path, "r+b") as f:  # cut short, as by a failing disk
        f.truncate(os.path.getsize(path) // 2)
    (tmp_path / "history.csv").write_text("epoch,loss\n0,2.3\n1,2.2\n2,2.1\n")

    _, resumed_from = training.make_callbacks(TrainConfig(), str(tmp_path), "accuracy")
    assert resumed_from == 2
    err = capsys.readouterr().err
    assert f"cannot be read ({broken}: " in err
    # It said "kept", and the finished run deleted it with the backup.
    assert "set aside as *.unreadable (deleted with the backup when the run finishes)" in err
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,loss", "0,2.3", "1,2.2"]
    assert backup_weights_equal(model, backup, weights[1])
    assert os.path.exists(path + ".unreadable")  # kept, not deleted
    assert recover_backup(backup) == 2  # now readable: nothing more to say
    assert capsys.readouterr().err == ""


def test_a_resumed_run_keeps_the_best_epoch_of_its_history_to_beat(tmp_path):
    # The best checkpoint of a resumed run must not take the first epoch
    # after the resume for the best: an epoch before it did better.
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    back_up_epochs(tmp_path)
    (tmp_path / "history.csv").write_text("epoch,accuracy,val_accuracy\n0,0.4,0.3\n1,0.7,0.2\n2,0.5,0.1\n")
    for monitor, best in (("accuracy", 0.7), ("val_accuracy", 0.3)):
        callbacks, resumed_from = training.make_callbacks(TrainConfig(), str(tmp_path), monitor)
        assert resumed_from == 3
        checkpoints = {os.path.basename(c.filepath): c for c in callbacks if isinstance(c, AtomicModelCheckpoint)}
        assert (checkpoints["best.keras"].monitor, checkpoints["best.keras"].best) == (monitor, best)


def test_weights_newer_than_their_record_go_back_to_the_backup_before(tmp_path, capsys):
    backup, model, weights = back_up_epochs(tmp_path)
    record = os.path.join(backup, "training_metadata.json")
    with open(record, "w") as f:  # stopped before the epoch-3 record replaced epoch 2's
        f.write(open(record + ".bkp").read())

    assert recover_backup(backup) == 2
    assert "stopped between its weights and its record" in capsys.readouterr().err
    assert backup_weights_equal(model, backup, weights[1])
    assert recover_backup(backup) == 2  # the same weights twice: nothing to say
    assert capsys.readouterr().err == ""


def test_a_first_backup_stopped_before_its_record_starts_over(tmp_path, capsys):
    # A stop between the weights and the record of the very first backup:
    # there is no epoch to resume from, and nothing lost but that epoch.
    backup, _, _ = back_up_epochs(tmp_path)
    for name in ("training_metadata.json", "latest.weights.h5.bkp", "training_metadata.json.bkp"):
        os.remove(os.path.join(backup, name))
    assert recover_backup(backup) == 0
    assert "The first backup in" in capsys.readouterr().err
    assert os.listdir(backup) == ["latest.weights.h5.unreadable"]  # kept, not deleted
    assert recover_backup(backup) == 0 and capsys.readouterr().err == ""


def test_a_process_ahead_of_the_others_rolls_back_one_backup(tmp_path, capsys):
    backup, model, weights = back_up_epochs(tmp_path)
    with pytest.raises(BackupUnreadable, match="is after epoch 3, and the one before it is not after epoch 1"):
        roll_back_backup(backup, 1)  # the backup before holds epoch 2, not 1
    assert backup_epochs(backup) == 3 and backup_weights_equal(model, backup, weights[2])

    roll_back_backup(backup, 2)
    assert "is after epoch 3, but another process of the run stopped before" in capsys.readouterr().err
    assert backup_epochs(backup) == 2 and backup_weights_equal(model, backup, weights[1])
    assert recover_backup(backup) == 2  # whole, and quiet
    assert capsys.readouterr().err == ""

    with pytest.raises(BackupUnreadable, match="the one before it is not after epoch 0"):
        roll_back_backup(backup, 0)
    for name in ("latest.weights.h5.bkp", "training_metadata.json.bkp"):
        os.remove(os.path.join(backup, name))  # as after the first backup
    roll_back_backup(backup, 0)  # another process had backed nothing up
    assert os.listdir(backup) == [] and recover_backup(backup) == 0


def test_a_roll_back_to_the_first_epoch_keeps_its_backup(tmp_path, capsys):
    # Back to epoch 1 is back to a backup, not to none.
    backup, model, weights = back_up_epochs(tmp_path, count=2)
    roll_back_backup(backup, 1)
    assert backup_epochs(backup) == 1 and backup_weights_equal(model, backup, weights[0])
    assert recover_backup(backup) == 1


def test_backups_other_than_at_epoch_ends_are_refused(tmp_path):
    # Keras' `save_freq=N` backs up every N steps, in a way the schedule
    # and `recover_backup` know nothing of.
    with pytest.raises(ValueError, match="^ScheduledBackupAndRestore backs up at epoch ends only: "):
        ScheduledBackupAndRestore(str(tmp_path / "backup"), CheckpointSchedule(), save_freq=5)


def test_a_run_whose_backups_cannot_be_read_is_refused_in_one_line(fake_cifar, tmp_path):
    from keras_resnet import training
    from keras_resnet import run_folder
    from keras_resnet.config import ConfigError, TrainConfig

    config = TrainConfig(epochs=3, batch_size=25, data_dir=fake_cifar, export=False,
                         stage_filters=[8, 8, 8, 8], output_dir=str(tmp_path / "run"))
    run_folder.prepare_run_dir(config)  # an unfinished run of this network
    backup = tmp_path / "run" / "backup"
    backup.mkdir()
    for name in ["latest.weights.h5", "training_metadata.json"]:
        for suffix in ["", ".bkp"]:  # the latest backup and the one before it
            (backup / (name + suffix)).write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"--output-dir .*run: the backup in .*backup cannot be "
                       r"read \(training_metadata.json: JSONDecodeError: .*\); the one before it "
                       r"cannot be read either \(.*\)\. Pass --overwrite"):
        training.train(config)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "latest.weights.h5.bkp",
                                          "training_metadata.json", "training_metadata.json.bkp"]
    assert (backup / "latest.weights.h5").read_bytes() == b"junk"  # as it was
    for name in ["latest.weights.h5.bkp", "training_metadata.json.bkp"]:
        os.remove(backup / name)
    with pytest.raises(ConfigError, match="there is none before it"):
        training.train(config)


def test_a_backup_whose_arrays_cannot_be_read_counts_as_unreadable(tmp_path):
    # A file whose layout opens but whose data fails to read (a disk error;
    # here a corrupt compressed chunk) must not be restored from.
    import h5py

    from callbacks.backup import BACKUP_METADATA, BACKUP_WEIGHTS

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / BACKUP_METADATA).write_text(json.dumps({"epoch": 3}))
    weights = str(backup / BACKUP_WEIGHTS)
    with h5py.File(weights, "w") as f:
        data = f.create_dataset("layer/vars/0", data=np.arange(4096, dtype="float32"), chunks=(4096,),
                                compression="gzip")
        chunk = data.id.get_chunk_info(0)
    assert backup_epochs(str(backup)) == 3  # whole, it is read
    with open(weights, "r+b") as f:
        f.seek(chunk.byte_offset + chunk.size // 2)
        f.write(b"\xff" * 16)
    with h5py.File(weights, "r") as f:  # the layout still opens
        assert list(f["layer/vars"]) == ["0"]
    assert backup_epochs(str(backup)) is None


@pytest.mark.parametrize("order", ["schedule left out", "schedule after"])
def test_a_schedule_that_has_not_run_at_the_epoch_end_is_an_error_naming_the_order(tmp_path, order):
    # Its `due` stayed False (left out of `fit`) or was the epoch before's
    # (placed after the checkpoints): nothing was ever written, silently.
    model, x, y = tiny_model_and_batch()
    schedule = CheckpointSchedule(0)
    for checkpoint in (AtomicModelCheckpoint(str(tmp_path / "last.keras"), schedule=schedule),
                       ScheduledBackupAndRestore(str(tmp_path / "backup"), schedule)):
        callbacks = [checkpoint] if order == "schedule left out" else [checkpoint, schedule]
        with pytest.raises(ValueError, match=r"The CheckpointSchedule has not run at the end of epoch 1: "
                                             r"pass it to `fit` too, before the callbacks that consult it"):
            model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)


def test_a_stop_after_the_schedule_decided_still_writes_the_checkpoints(tmp_path):
    # EarlyStopping placed after the schedule (Keras users list it last): the
    # schedule had found the last epoch not due, so the best epoch's weights
    # waited in memory when `fit` returned, and the last epoch was never saved.
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()

    class Score(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = [0.1, 0.9, 0.3][epoch]
            self.weights.append(self.model.get_weights())

    class StopAfterThree(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 2

    score, schedule = Score(), CheckpointSchedule(1e9)
    best, last = str(tmp_path / "best.keras"), str(tmp_path / "last.keras")
    model.fit(x, y, batch_size=8, epochs=10, verbose=0, callbacks=[
        score, schedule, AtomicModelCheckpoint(best, monitor="score", schedule=schedule, mode="max"),
        AtomicModelCheckpoint(last, schedule=schedule), StopAfterThree()])
    assert all(np.array_equal(a, b) for a, b in zip(load_model(best).get_weights(), score.weights[1]))
    assert all(np.array_equal(a, b) for a, b in zip(load_model(last).get_weights(), score.weights[2]))
