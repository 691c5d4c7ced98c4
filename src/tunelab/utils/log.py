"""Logging set-up: tunelab speaks through one logger; libraries' chatter is turned down."""

from __future__ import annotations

import logging
import os
import warnings

log = logging.getLogger("tunelab")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(format="%(message)s", level=logging.DEBUG if verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
