"""Hotel-booking domain (Chinese): SQLite hotel database, the search_hotels tool, a grounded dialog
synthesizer and a CrossWOZ importer. Pure Python and stdlib sqlite3; no network access."""

from tunelab.domains.data import write_splits
from tunelab.domains.hotel import domain  # noqa: F401  (registers the domain)
from tunelab.domains.hotel.crosswoz import import_dialogs
from tunelab.domains.hotel.db import build_db, connect, import_crosswoz
from tunelab.domains.hotel.synth import synthesize
from tunelab.domains.hotel.tool import SEARCH_SCHEMA, TOOL_SPEC, search_hotels, validate_arguments

__all__ = [
    "SEARCH_SCHEMA", "TOOL_SPEC", "build_db", "connect", "import_crosswoz", "import_dialogs",
    "search_hotels", "synthesize", "validate_arguments", "write_splits",
]
