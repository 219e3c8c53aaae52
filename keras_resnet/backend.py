"""The Keras backend a command will run on, read before Keras loads.

The commands check the backend with their arguments, before Keras loads
(Keras' own errors are tracebacks), so they read the setting Keras reads:
`$KERAS_BACKEND`, else the "backend" of Keras' keras.json, else tensorflow.
Read from `$KERAS_BACKEND` alone, a keras.json naming "jax" ran JAX while
the checks took it for TensorFlow ("--num-processes > 1 needs
KERAS_BACKEND=jax"), and one naming "numpy" trained into Keras'
NotImplementedError.
"""

import json
import os
from typing import NamedTuple


class BackendSetting(NamedTuple):
    """A Keras backend, and where it is chosen.

    Attributes:
        name: str. The backend, as written ("jax", "torch", ...).
        keras_json: str or None. The keras.json that names it; None where
            `$KERAS_BACKEND` does, or for the default.
        default: bool. Whether nothing chooses it (tensorflow).
    """

    name: str
    keras_json: str | None = None
    default: bool = False

    def __str__(self):
        """The setting as a user finds it: `KERAS_BACKEND=jax`, or
        `"backend": "jax" in /home/me/.keras/keras.json`."""
        if self.keras_json is None:
            return f"KERAS_BACKEND={self.name}"
        return f"\"backend\": {json.dumps(self.name)} in {self.keras_json}"

    @property
    def back_to_tensorflow(self):
        """How to run on TensorFlow instead, for an error's last words:
        unsetting `$KERAS_BACKEND` gives keras.json's backend, which is
        tensorflow only where it names that or none."""
        if self.keras_json is None and keras_json_backend().name == "tensorflow":
            return "unset it for tensorflow"
        return "set KERAS_BACKEND=tensorflow"


def keras_json_path():
    """Where Keras reads keras.json: `$KERAS_HOME`, else ~/.keras, or
    /tmp/.keras where the home folder cannot be written (as Keras 3 does)."""
    if "KERAS_HOME" in os.environ:
        folder = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        folder = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.expanduser(os.path.join(folder, "keras.json"))


def configured_backend():
    """The backend `import keras` would load, and where it is chosen,
    without loading Keras: `$KERAS_BACKEND` unless empty, else keras.json's
    "backend" (a file Keras cannot read as a JSON object names none), else
    tensorflow.

    Returns:
        A `BackendSetting`.

    Example:
    ```python
    setting = configured_backend()
    if setting.name == "jax":
        print(f"JAX, chosen by {setting}")
    ```
    """
    if os.environ.get("KERAS_BACKEND"):
        return BackendSetting(os.environ["KERAS_BACKEND"])
    return keras_json_backend()


def keras_json_backend():
    """The backend keras.json names, as `configured_backend` reads it
    without `$KERAS_BACKEND`: a `BackendSetting`."""
    path = keras_json_path()
    try:
        with open(path) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):  # none, unreadable, not an object
        backend = None
    if isinstance(backend, str):
        return BackendSetting(backend, keras_json=path)
    return BackendSetting("tensorflow", default=True)
