"""The tool-calling loop: user message -> model -> (tool call -> run -> records -> model)* -> reply.

A malformed or invalid call is answered once with the error as the tool result, so the model can
correct itself; a second failure (or too many calls) ends the turn with a polite fallback reply.
Nothing here raises on what a model emits. With `return_unknown`, a well-formed call to a tool the agent
does not have ends the exchange and is the reply: the client (serve's `tool_calls`) runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tunelab.data.schema import Turn
from tunelab.domains import Tool, get_domain

FALLBACK = "Sorry, I could not get an answer from the tools; please rephrase or change the request."


@dataclass
class ToolEvent:
    name: str
    arguments: dict | None
    records: list | None = None
    error: str | None = None


@dataclass
class AgentResult:
    reply: Turn  # the assistant turn shown to the user (a tool_call for the client: return_unknown)
    turns: list[Turn]  # every turn this exchange added to the history, user turn first
    events: list[ToolEvent] = field(default_factory=list)
    fallback: bool = False


class Agent:
    def __init__(self, reply_fn: Callable[[list[Turn]], Turn], tools: dict[str, Tool],
                 max_calls: int = 3, fallback: str = FALLBACK, on_event: Callable[[ToolEvent], None] | None = None,
                 return_unknown: bool = False):
        self.reply_fn, self.tools, self.max_calls, self.fallback = reply_fn, tools, max_calls, fallback
        self.return_unknown = return_unknown  # a call to a tool not in `tools` is returned, not answered
        self.on_event = on_event  # called as each tool call is run, before the model answers

    @classmethod
    def for_domain(cls, reply_fn: Callable[[list[Turn]], Turn], domain: str, resource: str, **kw) -> "Agent":
        """An agent with the tools and fallback reply of domain `domain` ('' : no tools) on `resource`."""
        plugin = get_domain(domain)
        if plugin is None:
            return cls(reply_fn, {}, **kw)
        return cls(reply_fn, plugin.make_tools(resource), fallback=plugin.fallback_reply, **kw)

    def _run(self, call: Turn) -> ToolEvent:
        if call.arguments is None:
            return ToolEvent(call.name, None, error=f"tool call is not valid JSON: {call.content[:200]}")
        if call.name not in self.tools:
            return ToolEvent(call.name, call.arguments,
                             error=f"unknown tool '{call.name}'; available: {', '.join(self.tools) or 'none'}")
        try:
            result = self.tools[call.name](call.arguments)
        except Exception as e:  # a tool bug must not end the conversation
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if not result.get("ok"):
            return ToolEvent(call.name, call.arguments, error=str(result.get("error")))
        return ToolEvent(call.name, call.arguments, records=result.get("records", []))

    def respond(self, history: list[Turn], user_text: str) -> AgentResult:
        turns = list(history) + [Turn("user", content=user_text)]
        new_start = len(history)
        events: list[ToolEvent] = []
        failures = 0
        for _ in range(self.max_calls + 1):
            out = self.reply_fn(turns)
            if out.role != "tool_call":
                reply = out if out.content.strip() else Turn("assistant", content=self.fallback)
                turns.append(reply)
                return AgentResult(reply, turns[new_start:], events, fallback=reply is not out)
            if self.return_unknown and out.arguments is not None and out.name not in self.tools:
                turns.append(out)
                return AgentResult(out, turns[new_start:], events)
            event = self._run(out)
            events.append(event)
            if self.on_event:
                self.on_event(event)
            turns.append(Turn("tool_call", name=out.name or "unknown", arguments=out.arguments or {},
                              content=out.content))
            if event.error is None:
                turns.append(Turn("tool_result", name=out.name, records=event.records))
                continue
            failures += 1
            if failures > 1:
                break
            turns.append(Turn("tool_result", name=out.name or "unknown", records={"error": event.error}))
        reply = Turn("assistant", content=self.fallback)
        turns.append(reply)
        return AgentResult(reply, turns[new_start:], events, fallback=True)
