"""tunelab: fine-tune a language model on a domain's dialogs, evaluate it on the task, serve it."""

__version__ = "0.1.0"
