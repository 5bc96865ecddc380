"""Tasks: how data becomes batches, how the model is called and read, the loss and the metrics."""

from lbc_catalog.tasks import DEFAULT_TASK
from lbc_core.tasks.base import Batch, Metric, Task, TaskError, logits_of
from lbc_core.tasks.image import ImageClassification
from lbc_core.tasks.text import CausalLM, SequenceClassification

# One instance per task name: tasks hold no state, only behaviour.
_TASKS: dict[str, Task] = {
    task.name: task for task in (ImageClassification(), SequenceClassification(), CausalLM())
}
TASK_NAMES = tuple(_TASKS)


def get_task(name: str) -> Task:
    """The task called ``name`` (see TASK_NAMES)."""
    try:
        return _TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}") from None


__all__ = [
    "DEFAULT_TASK",
    "TASK_NAMES",
    "Batch",
    "CausalLM",
    "ImageClassification",
    "Metric",
    "SequenceClassification",
    "Task",
    "TaskError",
    "get_task",
    "logits_of",
]
