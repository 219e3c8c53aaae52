import json
import os

import keras
import numpy as np

from callbacks import AtomicModelCheckpoint, CheckpointSchedule, ScheduledBackupAndRestore
from keras_resnet import load_model
from tests.conftest import poison_logits_at, tiny_model_and_batch


class FakeMetric(keras.callbacks.Callback):
    """Puts a chosen `score` into each epoch's logs and remembers the weights."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.weights = scores, []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]
        self.weights.append(self.model.get_weights())


class FilesSeen(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(os.path.exists(self.path))


def fit_with_schedule(tmp_path, min_seconds, scores):
    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric(scores), CheckpointSchedule(min_seconds)
    best, last = str(tmp_path / "best.keras"), str(tmp_path / "last.keras")
    seen = FilesSeen(last)
    model.fit(x, y, batch_size=8, epochs=len(scores), verbose=0, callbacks=[
        metric, schedule,
        AtomicModelCheckpoint(best, monitor="score", schedule=schedule),
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
    weights, best, _, seen = fit_with_schedule(tmp_path, 0, [0.1, 0.2, 0.9, 0.3])
    assert seen == [True, True, True, True]
    assert all(np.array_equal(a, b) for a, b in zip(best, weights[2]))


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
        AtomicModelCheckpoint(str(best), monitor="score", schedule=schedule),
        AtomicModelCheckpoint(str(last), schedule=schedule),
    ])
    # Epochs 1 and 2 improve: best.keras is written and last.keras copies
    # it. Epoch 3 does not: last.keras is written.
    assert saves == [".partial.best.keras", ".partial.best.keras", ".partial.last.keras"]
    assert all(np.array_equal(a, b) for a, b in zip(load_model(str(best)).get_weights(), metric.weights[1]))
    assert all(np.array_equal(a, b) for a, b in zip(load_model(str(last)).get_weights(), metric.weights[2]))
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]


def test_best_epoch_waiting_in_memory_is_written_when_training_diverges(tmp_path):
    from callbacks import StopOnDivergence, TrainingDiverged

    keras.utils.set_random_seed(0)
    model, x, y = tiny_model_and_batch()
    metric, schedule = FakeMetric([0.9, 0.1, 0.5]), CheckpointSchedule(1e9)
    best = AtomicModelCheckpoint(str(tmp_path / "best.keras"), monitor="score", schedule=schedule)
    try:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[StopOnDivergence(), metric, schedule, best, poison_logits_at(2)])
    except TrainingDiverged:
        best.flush()
    else:
        raise AssertionError("training did not diverge")
    kept = load_model(str(tmp_path / "best.keras")).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, metric.weights[0]))
