"""Serving trained runs: an OpenAI-compatible HTTP API (api.py) and a Gradio web UI (webui.py)."""
