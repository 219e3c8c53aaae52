"""Batch ends that never make the training loop wait for a step.

On JAX (and PyTorch) Keras runs batch-end callbacks in worker threads, as
soon as each step's results are ready, when every callback allows it
(`async_safe`, or no batch-end method). Then they may run out of order.
"""

import math
import re
import time

import keras
import pytest

from callbacks import AtomicModelCheckpoint
from callbacks import CheckpointSchedule
from callbacks import EpochTensorBoard
from callbacks import HistoryCSVLogger
from callbacks import ScheduledBackupAndRestore
from callbacks import StopAtAccuracy
from callbacks import StopOnDivergence
from callbacks import ThroughputLogger
from callbacks import TrainingDiverged
from keras_resnet.config import TrainConfig
from keras_resnet.training import make_callbacks
from tests.conftest import tiny_model_and_batch


def waits_for_every_step(callback):
    """Whether Keras must run `callback`'s batch ends in the training loop."""
    base = keras.callbacks.Callback
    overridden = (type(callback).on_train_batch_end is not base.on_train_batch_end
                  or type(callback).on_batch_end is not base.on_batch_end)
    return overridden and not getattr(callback, "async_safe", False)


def test_no_callback_of_a_run_makes_training_wait_for_each_step(tmp_path):
    config = TrainConfig(target_accuracy=0.9)  # every optional callback
    callbacks, _ = make_callbacks(config, str(tmp_path), "accuracy")
    assert any(isinstance(c, keras.callbacks.TensorBoard) for c in callbacks)
    assert [type(c).__name__ for c in callbacks if waits_for_every_step(c)] == []
    # The check itself tells the two kinds apart.
    assert waits_for_every_step(keras.callbacks.TerminateOnNaN())
    assert not waits_for_every_step(keras.callbacks.CSVLogger(str(tmp_path / "h.csv")))


def test_divergence_names_the_first_bad_step_when_batch_ends_come_out_of_order():
    stop = StopOnDivergence()
    stop.on_epoch_begin(0)
    for step, loss in ((0, 2.3), (4, math.nan), (2, math.inf), (3, 1.0)):
        stop.on_train_batch_end(step, {"loss": loss})
    with pytest.raises(TrainingDiverged, match="loss is inf at epoch 1, step 3[.]"):
        stop.on_epoch_end(0)
    stop.on_epoch_begin(1)  # a new epoch starts clean
    stop.on_train_batch_end(0, {"loss": 0.5})
    stop.on_epoch_end(1)


def test_throughput_counts_every_step_when_batch_ends_come_out_of_order():
    logger = ThroughputLogger(batch_size=10)
    before = time.perf_counter()
    logger.on_epoch_begin(0)
    for step in (1, 2, 0):  # the last step's end arrives before an earlier one
        time.sleep(0.05)
        logger.on_train_batch_end(step)
    after = time.perf_counter()
    logs = {}
    logger.on_epoch_end(0, logs)
    # Three steps of 10 images, over at least the 0.15 s slept and at most
    # the time measured around them.
    assert 30 / (after - before) <= logs["images_per_sec"] <= 30 / 0.15


def test_throughput_times_each_epoch_from_its_own_start(monkeypatch):
    # Epoch 2 starts 10 s in and takes 1 s for its two steps of 10 images:
    # 20 images per second, not 20 over the 11 s since epoch 1 began.
    from types import SimpleNamespace

    from callbacks import throughput

    clock = iter([0.0, 1.0, 2.0, 10.0, 10.5, 11.0])
    monkeypatch.setattr(throughput, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    logger, rates = ThroughputLogger(batch_size=10), []
    for epoch in range(2):
        logs = {}
        logger.on_epoch_begin(epoch)
        for step in range(2):
            logger.on_train_batch_end(step)
        logger.on_epoch_end(epoch, logs)
        rates.append(logs["images_per_sec"])
    assert rates == [10.0, 20.0]


@pytest.mark.parametrize("make, received", [
    (lambda: StopAtAccuracy(True), "target=True"),
    (lambda: StopAtAccuracy("0.9"), "target='0.9'"),  # a TypeError from `<` before
    (lambda: CheckpointSchedule("5"), "min_seconds='5'"),
    (lambda: CheckpointSchedule(math.nan), "min_seconds=nan"),
    (lambda: ThroughputLogger(0), "batch_size=0"),
    # Refused only after the first epoch had trained, naming a temporary file.
    (lambda: AtomicModelCheckpoint("run/model"), "filepath='run/model'"),
    # Accepted, then failed at the first epoch's end (or, for the mode,
    # fell back to "auto" as Keras' ModelCheckpoint does).
    (lambda: AtomicModelCheckpoint("b.keras", "accuracy", initial_value_threshold="0.5"),
     "initial_value_threshold='0.5'"),
    (lambda: AtomicModelCheckpoint("b.keras", schedule="epoch"), "schedule='epoch'"),
    (lambda: AtomicModelCheckpoint("b.keras", monitor="val_loss", mode="lowest"), "mode='lowest'"),
    (lambda: AtomicModelCheckpoint(None), "filepath=None"),
    (lambda: ScheduledBackupAndRestore("backup", None), "schedule=None"),
    # Refused without naming the flag or quoting the value.
    (lambda: ScheduledBackupAndRestore("backup", CheckpointSchedule(), save_freq=5), "save_freq=5"),
    (lambda: HistoryCSVLogger(None), "filename=None"),
    # Keras' TensorBoard wrote into a folder named "None", or "" into ./train.
    (lambda: EpochTensorBoard(None), "log_dir=None"),
    (lambda: EpochTensorBoard(""), "log_dir=''"),
    (lambda: StopAtAccuracy(0.9, monitor=None), "monitor=None"),
    # Stopped at the first epoch: a loss starts above any target in (0, 1].
    (lambda: StopAtAccuracy(0.5, monitor="val_loss"), "monitor='val_loss'"),
    (lambda: StopAtAccuracy(0.5, verbose="yes"), "verbose='yes'"),
    # Keras' ModelCheckpoint formats these; here one file named
    # "ckpt-{epoch:02d}.keras" was written over every epoch.
    (lambda: AtomicModelCheckpoint("ckpt-{epoch:02d}.keras"), "filepath='ckpt-{epoch:02d}.keras'"),
])
def test_callback_arguments_are_a_value_error_quoting_them(make, received):
    with pytest.raises(ValueError, match=re.escape(f"Received: {received}")):
        make()


def test_tensorboard_lets_batch_ends_run_in_a_worker_only_when_they_write_nothing(tmp_path):
    assert EpochTensorBoard(str(tmp_path), write_graph=False).async_safe
    assert not EpochTensorBoard(str(tmp_path), update_freq="batch").async_safe
    assert not EpochTensorBoard(str(tmp_path), update_freq=10).async_safe  # every 10 batches
    assert not EpochTensorBoard(str(tmp_path), profile_batch=2).async_safe
    # Its graph is written at a batch end, through `self.model`, which on JAX
    # syncs the training state: in a worker thread, 6 of 20 fits failed.
    assert not EpochTensorBoard(str(tmp_path)).async_safe


def test_training_stops_at_the_end_of_the_first_epoch_at_the_target(capsys):
    model, x, y = tiny_model_and_batch()

    class ScriptedAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = [0.2, 0.6, 0.9, 0.95][epoch]

    stop = StopAtAccuracy(0.5)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ScriptedAccuracy(), stop])
    assert stop.stopped_epoch == 2 and len(history.history["loss"]) == 2
    assert "Reached val_accuracy=0.6000 >= 0.5 at epoch 2; stopping." in capsys.readouterr().out
    exact = StopAtAccuracy(0.6)  # reaching the target is enough
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ScriptedAccuracy(), exact])
    assert exact.stopped_epoch == 2 and len(history.history["loss"]) == 2
    never = StopAtAccuracy(0.99)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ScriptedAccuracy(), never])
    assert never.stopped_epoch is None and len(history.history["loss"]) == 4
    # Used again, it says what this `fit` did (it kept the first fit's epoch).
    stop.target = 0.99
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ScriptedAccuracy(), stop])
    assert stop.stopped_epoch is None and len(history.history["loss"]) == 4
    capsys.readouterr()
    quiet = StopAtAccuracy(0.5, verbose=0)  # as Keras' EarlyStopping(verbose=0): no line
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ScriptedAccuracy(), quiet])
    assert quiet.stopped_epoch == 2 and len(history.history["loss"]) == 2
    assert "Reached" not in capsys.readouterr().out


def test_a_target_on_a_metric_that_falls_as_the_model_improves_is_refused():
    # `val_mae` of 1.13 was ">= 0.5": training stopped after its first epoch.
    model, x, y = tiny_model_and_batch()
    model.compile("sgd", "categorical_crossentropy", metrics=["mae", "accuracy"])
    with pytest.raises(ValueError, match=re.escape("val_mae is lower when better; for it, use "
                                                   "keras.callbacks.EarlyStopping")):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y),
                  callbacks=[StopAtAccuracy(0.5, monitor="val_mae")])
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y),
                        callbacks=[StopAtAccuracy(1.0, monitor="val_accuracy")])  # grows: taken
    assert len(history.history["val_accuracy"]) == 2


def test_a_ctrl_c_that_python_lost_ends_fit_at_the_next_epoch_end(lost_ctrl_c_after_the_first_epoch):
    # A KeyboardInterrupt raised inside a garbage-collection callback (JAX
    # has one) is printed and dropped: 5 of 15 Ctrl-Cs on JAX trained on
    # to the end.
    import signal

    from callbacks import StopOnLostInterrupt

    model, x, y = tiny_model_and_batch()
    ended = []
    callbacks = [StopOnLostInterrupt(), lost_ctrl_c_after_the_first_epoch(ended)]
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=callbacks)
    assert ended == [0]  # epoch 1's end raised before the callbacks after it
    # Its handler records a Ctrl-C and raises, as Python's does; a fit that
    # ends normally gives the handler back.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[StopOnLostInterrupt()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_monitored_metric_missing_from_the_logs_is_warned_about_once(tmp_path):
    # Without validation data `val_accuracy` never comes: the best model was
    # never written and the target never stopped training, without a word.
    model, x, y = tiny_model_and_batch()
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    best = tmp_path / "best.keras"
    callbacks = [AtomicModelCheckpoint(str(best), monitor="val_accuracy"), StopAtAccuracy(0.5)]
    with pytest.warns(UserWarning) as warned:
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    messages = [str(w.message) for w in warned if "val_accuracy" in str(w.message)]
    assert len(messages) == 2, messages  # one from each callback, not one per epoch
    assert any(str(best) in message for message in messages)
    assert not best.exists()
