"""The project's own Keras callbacks (Keras' built-in ones are used as-is)."""

from callbacks.backup import BACKUP_METADATA
from callbacks.backup import BACKUP_WEIGHTS
from callbacks.backup import BackupMismatch
from callbacks.backup import BackupUnreadable
from callbacks.backup import ScheduledBackupAndRestore
from callbacks.backup import backup_epochs
from callbacks.backup import recover_backup
from callbacks.backup import roll_back_backup
from callbacks.checkpoint import AtomicModelCheckpoint
from callbacks.checkpoint import CheckpointSchedule
from callbacks.divergence import StopOnDivergence
from callbacks.divergence import TrainingDiverged
from callbacks.history import HistoryCSVLogger
from callbacks.interrupt import StopOnLostInterrupt
from callbacks.learning_rate import LearningRateLogger
from callbacks.target import StopAtAccuracy
from callbacks.tensorboard import EpochTensorBoard
from callbacks.throughput import ThroughputLogger

__all__ = [
    "AtomicModelCheckpoint",
    "BACKUP_METADATA",
    "BACKUP_WEIGHTS",
    "BackupMismatch",
    "BackupUnreadable",
    "CheckpointSchedule",
    "EpochTensorBoard",
    "HistoryCSVLogger",
    "LearningRateLogger",
    "ScheduledBackupAndRestore",
    "StopAtAccuracy",
    "StopOnDivergence",
    "StopOnLostInterrupt",
    "ThroughputLogger",
    "TrainingDiverged",
    "backup_epochs",
    "recover_backup",
    "roll_back_backup",
]
