"""train.py with the callbacks of before this session (not async_safe): every
batch end waits for its step, for the timing comparison."""
import sys

import callbacks

for cls in (callbacks.StopOnDivergence, callbacks.ThroughputLogger,
            callbacks.ScheduledBackupAndRestore):
    cls.async_safe = False

import train  # noqa: E402

sys.exit(train.main(sys.argv[1:]))
