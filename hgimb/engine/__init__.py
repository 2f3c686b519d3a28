"""Training engine: the trainer, batching strategies and the end-to-end run."""
from .run import RunResult, load_task, run_experiment, train_task  # noqa: F401
from .trainer import Trainer, TrainOutcome  # noqa: F401
