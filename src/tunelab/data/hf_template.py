"""A tunelab chat template as a Hugging Face / llama.cpp Jinja `chat_template`.

The Jinja renders OpenAI-style messages to the text tunelab's Renderer trains on: the same bos,
role prefixes, end marker and separator, the run's system prompt when the messages bring none, and
a tool call as `<tool_call>{"name":..,"arguments":{..}}</tool_call>` in compact JSON (arguments given
as an object; a string is inserted as it is). A tool message's content is inserted as it is: send
the records as the run was trained to read them (`compact_records` for `data.tool_results: table`).
"""

from __future__ import annotations

import json
import re

from tunelab.data.template import ChatTemplate

_BODY = """{%- set tl_sys = SYSTEM -%}
{{- BOS -}}
{%- if tl_sys and (not messages or messages[0]['role'] not in ['system', 'developer']) -%}
{{- P_SYSTEM + tl_sys + END + SEP -}}
{%- endif -%}
{%- for m in messages -%}
{%- set text = m['content'] if m['content'] is string else '' -%}
{%- if m['role'] in ['system', 'developer'] -%}
{{- P_SYSTEM + text + END + SEP -}}
{%- elif m['role'] == 'user' -%}
{{- P_USER + text + END + SEP -}}
{%- elif m['role'] == 'assistant' -%}
{%- set calls = m['tool_calls'] if m['tool_calls'] is defined and m['tool_calls'] else [] -%}
{%- if text.strip() or not calls -%}
{{- P_ASSISTANT + text + END + SEP -}}
{%- endif -%}
{%- for c in calls -%}
{%- set f = c['function'] if c['function'] is defined else c -%}
{%- if f['arguments'] is string -%}
{%- set call = '{"name":' + (f['name'] | tojson) + ',"arguments":' + f['arguments'] + '}' -%}
{%- else -%}
{%- set call = {'name': f['name'], 'arguments': f['arguments']} | tojson(separators=(',', ':')) -%}
{%- endif -%}
{{- P_TOOL_CALL + CALL_OPEN + call + CALL_CLOSE + END + SEP -}}
{%- endfor -%}
{%- elif m['role'] in ['tool', 'function'] -%}
{{- P_TOOL_RESULT + RESULT_OPEN + text + RESULT_CLOSE + END + SEP -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- P_ASSISTANT -}}
{%- endif -%}"""


def _literal(text: str) -> str:
    # a JSON string is a valid Jinja string literal (same escapes), so any text survives
    return json.dumps(text, ensure_ascii=False)


def _around(template: ChatTemplate, src: str, var: str) -> tuple[str, str]:
    """The template's text before and after `{{ var }}` in a tool wrapper, rendered."""
    marker = "\x00TUNELAB\x00"
    rendered = template._r(src, **{var: marker, "name": "{name}"})
    if marker not in rendered or "{name}" in rendered:
        raise ValueError(f"template {template.name}: its {var} wrapper cannot be expressed as a Jinja chat template")
    before, after = rendered.split(marker)
    return before, after


def hf_chat_template(template: ChatTemplate, system_prompt: str = "") -> str:
    """Jinja for `tokenizer.chat_template` that renders what `template` trains on (see module doc)."""
    call_open, call_close = _around(template, template.tool_call, "call")
    result_open, result_close = _around(template, template.tool_result, "records")
    values = {
        "SYSTEM": system_prompt, "BOS": template.bos_text(), "END": template.end_text(),
        "SEP": template._r(template.sep), "CALL_OPEN": call_open, "CALL_CLOSE": call_close,
        "RESULT_OPEN": result_open, "RESULT_CLOSE": result_close,
        **{f"P_{role.upper()}": template._r(template.prefix[role])
           for role in ("system", "user", "assistant", "tool_call", "tool_result")},
    }
    # one pass: a value (a system prompt saying "END", say) is never scanned for placeholders again
    return re.sub(r"\b(" + "|".join(values) + r")\b", lambda m: _literal(values[m.group(1)]), _BODY)
