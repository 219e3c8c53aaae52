"""One process at a time in a folder: a training run's, or a search's.

Two processes writing one run folder interleave their `history.csv` rows,
backups and exports without a word; `hold_folder` lets the second one be
refused instead. The lock is an advisory `flock` on the folder itself (no
file is added to it), held until `release_folder` or the process's end,
so a killed process leaves no stale lock. Within one process a folder can
be held again (a notebook training twice). Where the system has no
`flock` (Windows) or the file system refuses it, nothing is locked.
"""

import os
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# Real path -> (device, inode, descriptor) of each folder this process holds.
_held = {}


def hold_folder(path):
    """Holds the existing folder `path` for this process.

    Returns:
        `False`, holding nothing, if another process holds it; else `True`.
    """
    if fcntl is None:
        return True
    key = os.path.realpath(path)
    stat = os.stat(key)
    if key in _held:
        if _held[key][:2] == (stat.st_dev, stat.st_ino):
            return True
        release_folder(key)  # a folder since replaced (`--overwrite`)
    descriptor = os.open(key, os.O_RDONLY)
    for _ in range(5):  # a `held_elsewhere` probe holds it for an instant
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:  # a file system without locks: go on unlocked
            os.close(descriptor)
            return True
    else:
        os.close(descriptor)
        return False
    _held[key] = (stat.st_dev, stat.st_ino, descriptor)
    return True


def release_folder(path):
    """Lets other processes have `path` again (nothing if not held)."""
    held = _held.pop(os.path.realpath(path), None)
    if held:
        os.close(held[2])


def held_elsewhere(path):
    """Whether another process holds the folder `path` now."""
    if fcntl is None or not os.path.isdir(path) or os.path.realpath(path) in _held:
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # unreadable: taken as free; holding it then says what is wrong
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)  # closing it releases a lock it took
    return False
