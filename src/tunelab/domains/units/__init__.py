"""Unit conversion (English): the convert_units tool over a bundled unit table and a dialog synthesizer.
The second domain: it shows what a domain plug-in needs, with no database."""

from tunelab.domains.units import domain  # noqa: F401  (registers the domain)
from tunelab.domains.units.synth import synthesize
from tunelab.domains.units.tool import TOOL_SPEC, UNITS, convert, convert_units

__all__ = ["TOOL_SPEC", "UNITS", "convert", "convert_units", "synthesize"]
