"""`history.csv`: Keras' `CSVLogger` with only the columns a run's epochs fill."""

import csv
import os

import keras

from keras_resnet.atomic import write_atomically
from keras_resnet.checks import check_path


class HistoryCSVLogger(keras.callbacks.CSVLogger):
    """Keras' `CSVLogger`, appending, without columns that only hold "NA".

    When the first epoch's logs hold no `val_` entry, Keras' logger adds a
    `val_` column for every entry, in case a later epoch validates
    (`validation_freq`). A run here validates every epoch or never, so those
    columns (`val_loss`, but also `val_learning_rate`) would only ever hold
    "NA". This logger writes the first epoch's entries as they are, and
    adds a column when a later epoch logs a new entry (with
    `validation_freq=2`, `val_loss` from the second epoch on), "NA" in the
    rows before. Appending to a file that has a header, it keeps that file's
    columns, so that a resumed run's rows line up with the rows before them.

    Args:
        filename: str. The CSV file: created (its folder too), or appended to.

    Example:
    ```python
    model.fit(x, y, epochs=3, callbacks=[HistoryCSVLogger("run/history.csv")])
    ```
    """

    def __init__(self, filename):
        check_path("filename", filename)  # Keras' logger fails on it only as training starts
        if os.path.isdir(filename):
            raise ValueError(f"`filename` must be a file's path, not a folder's. Received: filename={filename!r}")
        super().__init__(filename, append=True)

    def on_train_begin(self, logs=None):
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = self._existing_columns() or sorted(logs or {})
        if added := sorted(set(logs or {}) - set(self.keys)):
            self._add_columns(added)
        super().on_epoch_end(epoch, logs)

    def _add_columns(self, names):
        """Rewrites the file with columns `names` after the others, "NA" in
        the rows written so far (written aside, then renamed into place)."""
        self.keys = self.keys + names
        if self.csv_file is not None:
            self.csv_file.close()
        rows = []
        if os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                rows = list(csv.reader(f, delimiter=self.sep))[1:]

        def write(partial):
            with open(partial, "w", newline="") as f:
                writer = csv.writer(f, delimiter=self.sep)
                writer.writerow(["epoch", *self.keys])
                writer.writerows(row + ["NA"] * len(names) for row in rows)

        write_atomically(self.filename, write)
        self.csv_file = open(self.filename, "a", newline="")
        self.writer, self.append_header = None, False  # Keras makes a writer of the new columns

    def _existing_columns(self):
        """The columns after `epoch` in the file's header, if it has one."""
        if not os.path.isfile(self.filename):
            return None
        with open(self.filename, newline="") as f:
            header = next(csv.reader(f), None)
        return header[1:] if header else None
