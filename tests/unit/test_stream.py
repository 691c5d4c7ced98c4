"""The incremental parser of a streamed turn (infer/stream.py) that the terminal chat and the API share."""

import pytest

from tunelab.data.template import TOOL_OPEN
from tunelab.infer.stream import TurnStream


def run(pieces, stops=()):
    parser, shown = TurnStream(stops), []
    for p in pieces:
        shown.append(parser.feed(p))
        if parser.done:
            break
    shown.append(parser.finish())
    return parser, shown


def test_text_is_shown_as_it_comes_once_it_cannot_be_a_call():
    parser, shown = run(["  Hel", "lo", " there"])
    assert parser.mode == "text" and shown == ["Hel", "lo", " there", ""]


def test_a_tool_call_is_held_whole():
    parser, shown = run([TOOL_OPEN[:3], TOOL_OPEN[3:], '{"name": "f"}'])
    assert parser.mode == "tool" and "".join(shown) == "" and parser.raw.startswith(TOOL_OPEN)


def test_a_prefix_of_the_call_marker_that_ends_is_text():
    parser, shown = run([TOOL_OPEN[:4]])
    assert parser.mode == "text" and "".join(shown) == TOOL_OPEN[:4]


@pytest.mark.parametrize("pieces", [["ab", "cEN", "Dxyz"], ["abcE", "ND", "more"], ["abcEND"]])
def test_text_is_cut_at_a_stop_string_split_across_pieces(pieces):
    parser, shown = run(pieces, ["END"])
    assert parser.done and "".join(shown) == "abc"
