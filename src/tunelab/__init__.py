"""tunelab: fine-tune a language model on a domain's dialogs, evaluate it on the task, serve it."""

import logging as _logging

# bitsandbytes (imported by peft/transformers when installed) warns at import time, through Python's
# last-resort handler, that it cannot fetch an optional CPU kernel from a hub; tunelab never fetches.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

__version__ = "0.1.0"
