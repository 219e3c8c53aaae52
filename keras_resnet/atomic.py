"""Files that appear whole, and folders that go whole.

Each file is written under a hidden partial name beside it and renamed into
place (`os.replace`, atomic on one file system): a crash or Ctrl-C during
the write leaves the last whole file, and at most a partial one that is
never renamed in. A folder that `--overwrite` replaces is renamed aside
before it is deleted, so it is never left half deleted where it was.
"""

import json
import os
import shutil
import tempfile

PARTIAL_PREFIX = ".partial."


def partial_path(path):
    """Where `path` is written before it is renamed into place. The name
    keeps its ending, which Keras needs (`.keras`, `.weights.h5`)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, PARTIAL_PREFIX + name)


def is_partial(name):
    """Whether the file `name` is a partial write (`NAME.partial` too, the
    name earlier versions gave JSON and CSV files)."""
    return name.startswith(PARTIAL_PREFIX) or name.endswith(".partial")


def write_atomically(path, write):
    """Calls `write(partial)` to write the file under its partial name,
    then renames it to `path`. A partial file left by an earlier crash is
    replaced.

    Example:

    ```python
    write_atomically("model.keras", model.save)
    ```
    """
    partial = partial_path(path)
    if os.path.exists(partial):
        os.remove(partial)
    os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
    write(partial)
    os.replace(partial, path)


def copy_atomically(source, path):
    """Copies the file `source` to `path`, which appears whole."""
    write_atomically(path, lambda partial: shutil.copyfile(source, partial))


def write_json_atomic(path, payload):
    """Writes `payload` as indented JSON to `path`, atomically
    (`config.json`, `metrics.json`, the tuner's files)."""

    def write(partial):
        with open(partial, "w") as f:
            json.dump(payload, f, indent=2)

    write_atomically(path, write)


def delete_folder_whole(path):
    """Deletes the folder `path`, all at once where it was.

    The folder is renamed aside first (one step that works or leaves it
    whole) and deleted there: a file that cannot be deleted then never
    leaves half of it behind under its name.

    Returns:
        None, or `(aside, error)`: the folder aside that holds what could
        not be deleted, and the `OSError` that stopped the deletion.

    Raises:
        OSError: it could not be renamed aside (its parent is not writable,
            or it is a mount point); nothing was deleted.
    """
    folder = os.path.abspath(path)  # also drops a trailing slash or `/.`
    aside = tempfile.mkdtemp(prefix=f".overwritten-{os.path.basename(folder)}-",
                             dir=os.path.dirname(folder))
    try:
        os.replace(folder, aside)  # onto the empty folder just made
    except OSError:
        os.rmdir(aside)
        raise
    try:
        shutil.rmtree(aside)
    except OSError as e:
        return aside, e
    return None
