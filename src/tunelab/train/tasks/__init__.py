"""Training tasks, one module each, registered by name (`data.task`)."""

from tunelab.train.tasks import classify, preference, sft  # noqa: F401  (each module registers its task)
from tunelab.train.tasks.base import TASKS, Prepared, Task, get_task, register_task

__all__ = ["TASKS", "Prepared", "Task", "get_task", "register_task"]
