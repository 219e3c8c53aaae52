"""The project's own Keras callbacks (Keras' built-in ones are used as-is)."""

from callbacks.checkpoint import BACKUP_METADATA
from callbacks.checkpoint import BACKUP_WEIGHTS
from callbacks.checkpoint import AtomicModelCheckpoint
from callbacks.checkpoint import BackupMismatch
from callbacks.checkpoint import BackupUnreadable
from callbacks.checkpoint import CheckpointSchedule
from callbacks.checkpoint import ScheduledBackupAndRestore
from callbacks.checkpoint import backup_epochs
from callbacks.checkpoint import recover_backup
from callbacks.checkpoint import roll_back_backup
from callbacks.divergence import StopOnDivergence
from callbacks.divergence import TrainingDiverged
from callbacks.history import HistoryCSVLogger
from callbacks.interrupt import StopOnLostInterrupt
from callbacks.learning_rate import LearningRateLogger
from callbacks.target import StopAtAccuracy
from callbacks.tensorboard import EpochTensorBoard
from callbacks.throughput import ThroughputLogger
