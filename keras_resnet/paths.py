"""The folders and files named on the command line: checked up front, read,
replaced.

Checked before anything is written: a name that must be one folder inside
the folder another flag chooses, an empty value that would quietly mean
the current folder, a folder that cannot be created, a `--data-dir` that
is no folder. A JSON settings file is read whole, a repeated key refused.
A folder that `--overwrite` replaces is deleted whole
(`atomic.delete_folder_whole`), after `holds_working_directory` has said
whether this process works inside it.
"""

import json
import os
import sys

from keras_resnet.atomic import delete_folder_whole
from keras_resnet.config import ConfigError


def folder_name_problem(name, flag, example, parent_flag):
    """Why `name`, the value of `flag`, cannot name one folder inside the
    folder `parent_flag` names, or None. `""`, `"."` and `".."` name the
    parent itself or the folder above it, and a name with a path separator
    (an absolute path too) a folder elsewhere: deleting or replacing "the
    folder" would then take the parent with everything else in it.

    Args:
        name: str. The value given.
        flag: str. The flag it was given as, e.g. `"--model-name"`.
        example: str. A good value (and what it is), for the message.
        parent_flag: str. The flag that chooses where the folder goes.
    """
    if not isinstance(name, str):
        return f"{flag} must be a folder name (a str), such as {example}; got {name!r}."
    separators = {"/", os.sep, os.altsep} - {None}
    if name in ("", ".", "..") or any(s in name for s in separators):
        return (f"{flag} {name!r} must be one folder name, such as {example}; choose where "
                f"it goes with {parent_flag}.")
    return None


def model_name_problem(name):
    """Why `name` cannot name an exported model (one folder under the
    export root, the name TF Serving serves it under), or None."""
    return folder_name_problem(name, "--model-name", "keras_resnet (TF Serving's model name)",
                               "--export-dir")


def read_json_object(path, what, fix):
    """The JSON object in `path`, read whole, a repeated key refused.

    Args:
        path: str. The file.
        what: str. What it is, starting the message, e.g.
            `"The search's settings"`.
        fix: str. What to do about it, ending the message.

    Returns:
        A dict.

    Raises:
        ConfigError: the file cannot be read, is not JSON, repeats a key or
            holds something other than an object; naming `what`, the
            problem and `fix`.
    """
    def unique_keys(pairs):  # json keeps the last of a repeated key without a word
        keys = [key for key, _ in pairs]
        if repeated := sorted({key for key in keys if keys.count(key) > 1}):
            raise ValueError(f"the key(s) {repeated} appear more than once")
        return dict(pairs)

    try:
        with open(path) as f:
            value = json.load(f, object_pairs_hook=unique_keys)
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
        raise ConfigError(f"{what} {path} cannot be read ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path} holds a {type(value).__name__}, not a JSON object; {fix}")
    return value


def data_dir_problem(data_dir):
    """Why `--data-dir data_dir` is no folder to read CIFAR-10 from, or None
    (also for None: the default, `$CIFAR10_DIR` or tfds)."""
    from keras_resnet.data import misplaced_folder

    if data_dir is not None and (hint := misplaced_folder(data_dir)):
        return f"--data-dir: {hint}"
    if data_dir is None or os.path.isdir(data_dir):
        return None
    return (
        f"--data-dir: {'a file, not a folder' if os.path.isfile(data_dir) else 'no such folder'}"
        f" {data_dir!r}; give a python-version "
        "CIFAR-10 folder (data_batch_1..5, test_batch, batches.meta)."
    )


def empty_folder_problem(value, flag, default):
    """Why `value`, given as `flag`, names no folder, or None: an empty or
    blank value would quietly mean the current folder (the project's own
    source folder, run from there).

    Args:
        value: str or None. The value given (None: left out).
        flag: str. The flag it was given as, e.g. `"--export-dir"`.
        default: str. What leaving the flag out gives, for the message.
    """
    if isinstance(value, str) and not value.strip():
        return f"{flag} is empty: name a folder, or leave it out for {default}."
    return None


def holds_working_directory(path):
    """Whether the current folder is `path` or inside it: deleting `path`
    would pull the folder out from under this process, and every relative
    path after it (the default export folder, say) would fail."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current folder is gone already
        return False
    folder = os.path.realpath(path)
    return here == folder or here.startswith(folder.rstrip(os.sep) + os.sep)


def delete_for_overwrite(path, named, what, choose):
    """Deletes the folder `path` that `--overwrite` replaces, all at once
    (`atomic.delete_folder_whole`): never half of it for the same command to
    take up again.

    Args:
        path: str. The folder.
        named: str. How the refusal names it, e.g. `"--output-dir runs/seed"`.
        what: str. What it holds, for the note, e.g. `"run"`.
        choose: str. What to choose instead, e.g. `"another folder"`.

    Raises:
        ConfigError: it cannot be renamed aside; nothing was deleted.
    """
    try:
        left_in = delete_folder_whole(path)
    except OSError as e:
        raise ConfigError(
            f"{named} cannot be replaced ({e.strerror}: it and its parent folder must be "
            f"writable, and it cannot be a mount point); nothing was deleted. Choose {choose}, "
            "or empty this one yourself."
        ) from None
    if left_in:
        aside, error = left_in
        print(f"Note: the {what} {path} replaced could not be deleted completely "
              f"({error.strerror}: {error.filename}); what is left of it is in {aside}.",
              file=sys.stderr)


def can_create_folder(path):
    """Whether `path` is a writable folder or could be created as one (a
    link to nowhere can be neither)."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return os.path.isdir(path) and os.access(path, os.W_OK)
