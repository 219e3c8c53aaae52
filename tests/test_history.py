"""`history.csv`: one column per entry the epochs log, resumed files line up."""

import csv

from callbacks import HistoryCSVLogger
from callbacks import LearningRateLogger
from tests.conftest import tiny_model_and_batch


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_a_run_without_validation_has_no_val_columns(tmp_path):
    model, x, y = tiny_model_and_batch()
    path = tmp_path / "history.csv"
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[LearningRateLogger(), HistoryCSVLogger(str(path))])
    header, *rows = read_rows(path)
    assert header == ["epoch", "learning_rate", "loss"]
    assert [row[0] for row in rows] == ["0", "1"]
    assert all(float(value) >= 0 for row in rows for value in row)  # no "NA"


def test_the_folder_of_the_file_is_made_and_a_folder_for_the_file_is_refused(tmp_path):
    # The docstring's own example, "run/history.csv", failed with
    # FileNotFoundError as training began; a folder gave IsADirectoryError.
    import pytest

    model, x, y = tiny_model_and_batch()
    path = tmp_path / "run" / "history.csv"
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[HistoryCSVLogger(str(path))])
    assert read_rows(path)[0] == ["epoch", "loss"]
    with pytest.raises(ValueError, match=r"`filename` must be a file's path, not a folder's. "
                                         r"Received: filename='.*run'"):
        HistoryCSVLogger(str(tmp_path / "run"))


def test_a_run_with_validation_logs_it_every_epoch(tmp_path):
    model, x, y = tiny_model_and_batch()
    path = tmp_path / "history.csv"
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x[:8], y[:8]),
              callbacks=[HistoryCSVLogger(str(path))])
    header, *rows = read_rows(path)
    assert header == ["epoch", "loss", "val_loss"]
    assert len(rows) == 2 and all(float(value) >= 0 for row in rows for value in row)


def test_appending_keeps_the_existing_files_columns(tmp_path):
    # A file written before this logger, with Keras' empty val_ column.
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,2.5,NA\n")
    model, x, y = tiny_model_and_batch()
    model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0,
              callbacks=[HistoryCSVLogger(str(path))])
    header, first, resumed = read_rows(path)
    assert header == ["epoch", "loss", "val_loss"] and first == ["0", "2.5", "NA"]
    assert resumed[0] == "1" and float(resumed[1]) > 0 and resumed[2] == "NA"


def test_a_run_stopped_before_its_first_epoch_ended_gets_a_header_when_resumed(tmp_path):
    from keras_resnet.run_folder import trim_history

    # Keras creates history.csv empty as training starts; a stop before the
    # first epoch's end leaves it so. Resuming trims it: that wrote "\n",
    # which Keras took for a header, and the rows came without one.
    path = tmp_path / "history.csv"
    path.write_text("")
    trim_history(str(path), 0)
    model, x, y = tiny_model_and_batch()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[HistoryCSVLogger(str(path))])
    header, *rows = read_rows(path)
    assert header == ["epoch", "loss"] and [row[0] for row in rows] == ["0"]


def test_an_entry_first_logged_by_a_later_epoch_gets_its_column(tmp_path):
    # With `validation_freq=2` the first epoch logs no `val_loss`; its
    # column was left out of the file and the later values with it.
    model, x, y = tiny_model_and_batch()
    path = tmp_path / "history.csv"
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x[:8], y[:8]),
              validation_freq=2, callbacks=[HistoryCSVLogger(str(path))])
    header, *rows = read_rows(path)
    assert header == ["epoch", "loss", "val_loss"]
    assert [row[0] for row in rows] == ["0", "1", "2"]
    assert rows[0][2] == "NA" and float(rows[1][2]) > 0 and rows[2][2] == "NA"
    assert all(float(row[1]) > 0 for row in rows)


def test_a_resumed_run_that_logs_a_new_entry_adds_its_column_to_the_rows_before(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.5\n")
    model, x, y = tiny_model_and_batch()
    model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0,
              validation_data=(x[:8], y[:8]), callbacks=[HistoryCSVLogger(str(path))])
    header, first, resumed = read_rows(path)
    assert header == ["epoch", "loss", "val_loss"] and first == ["0", "2.5", "NA"]
    assert resumed[0] == "1" and float(resumed[1]) > 0 and float(resumed[2]) > 0
    assert not (tmp_path / ".partial.history.csv").exists()


def test_a_trimmed_and_resumed_file_ends_every_row_alike(tmp_path):
    # Trimming rewrote the kept rows with "\n" while the logger appends "\r\n"
    # (the csv module's): a resumed run's file mixed the two.
    from keras_resnet.run_folder import trim_history

    model, x, y = tiny_model_and_batch()
    path = tmp_path / "history.csv"
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[HistoryCSVLogger(str(path))])
    trim_history(str(path), 2)  # the backup held 2 epochs
    model.fit(x, y, batch_size=8, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[HistoryCSVLogger(str(path))])
    lines = path.read_bytes().splitlines(keepends=True)
    assert [line.split(b",")[0] for line in lines] == [b"epoch", b"0", b"1", b"2"]
    assert all(line.endswith(b"\r\n") for line in lines)


def test_a_history_value_that_is_not_finite_is_no_best_epoch(tmp_path):
    # "nan" or "inf" in history.csv became the best value to beat on resume,
    # which the checkpoint's threshold check now refuses.
    from keras_resnet.run_folder import best_in_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,val_accuracy\r\n0,0.5\r\n1,nan\r\n2,inf\r\n3,NA\r\n")
    assert best_in_history(str(path), "val_accuracy") == 0.5


def test_the_best_epoch_of_a_history_is_its_highest_value(tmp_path):
    from keras_resnet.run_folder import best_in_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,val_accuracy\r\n0,0.5\r\n1,0.7\r\n2,0.6\r\n")
    assert best_in_history(str(path), "val_accuracy") == 0.7  # not the last epoch's


def test_a_row_cut_short_of_its_line_end_is_ended_when_trimmed(tmp_path):
    # A stop while a row was written can leave it without its "\r\n": the
    # resumed run's first row would then continue that line.
    from keras_resnet.run_folder import trim_history

    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\r\n0,2.5\r\n1,2.4")
    trim_history(str(path), 2)  # the backup held 2 epochs
    model, x, y = tiny_model_and_batch()
    model.fit(x, y, batch_size=8, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[HistoryCSVLogger(str(path))])
    lines = path.read_bytes().splitlines(keepends=True)
    assert [line.split(b",")[0] for line in lines] == [b"epoch", b"0", b"1", b"2"]
    assert lines[2] == b"1,2.4\r\n" and all(line.endswith(b"\r\n") for line in lines)


def test_the_logged_learning_rate_is_the_schedules_rate_of_the_next_step():
    # On the backend the tests run on (test_backends.py checks JAX's): a
    # rate read once, at the start, logged the same value every epoch.
    import json

    import keras
    import numpy as np

    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=12)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(schedule), "categorical_crossentropy")
    x, y = np.zeros((32, 4), "float32"), np.eye(2, dtype="float32")[np.arange(32) % 2]
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[LearningRateLogger()])
    expected = [float(schedule(step)) for step in (4, 8, 12)]  # 4 steps an epoch
    assert np.allclose(history.history["learning_rate"], expected, rtol=1e-6), json.dumps(
        history.history["learning_rate"])
    assert expected[0] > expected[1] > expected[2] == 0.0
