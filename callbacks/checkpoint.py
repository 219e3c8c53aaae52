import os

import keras


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' `ModelCheckpoint`, but a checkpoint appears all at once.

    Keras writes the `.keras` file in place, so a crash during the write
    leaves a broken file where the last good one was. This subclass lets
    Keras write to a temporary name beside the target and renames it into
    place (`os.replace`, atomic on one file system). Epoch-end saving only.

    Args:
        filepath: str. The final `.keras` path (no `{epoch}` placeholders).
        **kwargs: passed to `keras.callbacks.ModelCheckpoint`.
    """

    def __init__(self, filepath, **kwargs):
        if kwargs.get("save_freq", "epoch") != "epoch":
            raise ValueError("AtomicModelCheckpoint saves at epoch ends only.")
        folder, name = os.path.split(os.fspath(filepath))
        self.final_path = os.fspath(filepath)
        super().__init__(os.path.join(folder, f".partial.{name}"), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        # A partial file left by a crash must never be taken for this epoch's.
        if os.path.exists(self.filepath):
            os.remove(self.filepath)
        super().on_epoch_end(epoch, logs)
        if os.path.exists(self.filepath):
            os.replace(self.filepath, self.final_path)
