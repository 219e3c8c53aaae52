"""`StopOnLostInterrupt`: a Ctrl-C that Python lost still ends `fit`."""

import signal
import threading

import keras


class StopOnLostInterrupt(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` at the first epoch end after a Ctrl-C
    that never reached the training loop.

    A Ctrl-C raises `KeyboardInterrupt` in whatever Python code runs next.
    When that is a garbage-collection callback (JAX registers one), Python
    prints the exception and drops it, and training went on to the end: 5
    of 15 Ctrl-Cs sent near an epoch end on JAX. While `fit` runs, this
    callback's SIGINT handler records each Ctrl-C before raising, as
    Python's does, and an interrupt that did not end `fit` is raised again
    at the next epoch end, or as `fit` ends. Place it first: it raises
    before the other callbacks save the epoch (a backup of it, say).

    A SIGINT ignored when `fit` starts (a job started with `nohup`) stays
    ignored; the handler is set from the main thread only.

    Example:
    ```python
    model.fit(x, y, epochs=10, callbacks=[StopOnLostInterrupt(), *others])
    ```
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False
        self._handling = False  # whether its handler is SIGINT's

    def _on_sigint(self, signum, frame):
        self.interrupted = True
        raise KeyboardInterrupt

    def on_train_begin(self, logs=None):
        self.interrupted = False
        current = signal.getsignal(signal.SIGINT)
        # Another one's, left by a `fit` that ended in an exception.
        stale = getattr(current, "__func__", None) is StopOnLostInterrupt._on_sigint
        if threading.current_thread() is threading.main_thread() and (
                current is signal.default_int_handler or stale):
            signal.signal(signal.SIGINT, self._on_sigint)
            self._handling = True

    def on_epoch_end(self, epoch, logs=None):
        if self.interrupted:
            raise KeyboardInterrupt

    def on_train_end(self, logs=None):
        if self._handling:  # Python's handler again
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._handling = False
        if self.interrupted:
            raise KeyboardInterrupt
