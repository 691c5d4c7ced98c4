"""Data readers, registered by format name; `read_conversations` sniffs the format per file."""

from tunelab.data.readers.base import READERS, read_conversations, read_rows, register_reader
from tunelab.data.readers import alpaca, hotel, messages, prompt_completion  # noqa: F401  (register)

__all__ = ["READERS", "read_conversations", "read_rows", "register_reader"]
