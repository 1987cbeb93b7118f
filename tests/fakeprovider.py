"""A local LLM server for tests: OpenAI Chat Completions and Anthropic Messages wire formats.

Replies come from a scripted queue; each is provider-neutral (text, tool calls,
usage) or an HTTP error, and is rendered in the format of the endpoint asked.
Every request body is recorded so tests can check what the agent sent.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] = (100, 20)
    raw_args: str | None = None  # send this string as the first tool call's arguments (bad JSON tests)


@dataclass
class Fail:
    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


def call(name: str, **args: Any) -> tuple[str, dict[str, Any]]:
    return (name, args)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class FakeProvider:
    """`with FakeProvider([...]) as fp:` then point the SDK at fp.openai_url / fp.anthropic_url."""

    def __init__(self, script: list[Reply | Fail] | None = None, default: Reply | Fail | None = None):
        self.script: list[Reply | Fail] = list(script or [])
        self.default = default or Reply(text="I have nothing more to do.")
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next(self) -> Reply | Fail:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    # --- wire formats -----------------------------------------------------------------------------
    @staticmethod
    def openai_body(r: Reply, model: str) -> dict[str, Any]:
        calls = [{"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                  "function": {"name": n, "arguments": r.raw_args if (i == 0 and r.raw_args) else json.dumps(a)}}
                 for i, (n, a) in enumerate(r.tools)]
        msg: dict[str, Any] = {"role": "assistant", "content": r.text or None}
        if calls:
            msg["tool_calls"] = calls
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": 1700000000,
                "model": model, "choices": [{"index": 0, "message": msg, "logprobs": None,
                                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": r.usage[0], "completion_tokens": r.usage[1],
                          "total_tokens": sum(r.usage)}}

    @staticmethod
    def anthropic_body(r: Reply, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": r.text}] if r.text else []
        content += [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:8]}", "name": n, "input": a}
                    for n, a in r.tools]
        return {"id": f"msg_{uuid.uuid4().hex[:8]}", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": "tool_use" if r.tools else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": r.usage[0], "output_tokens": r.usage[1]}}

    @staticmethod
    def error_body(f: Fail, anthropic: bool) -> dict[str, Any]:
        kind = ERROR_TYPES.get(f.status, "api_error")
        if anthropic:
            return {"type": "error", "error": {"type": kind, "message": f.message}}
        return {"error": {"message": f.message, "type": kind, "param": None, "code": kind}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                anthropic = self.path.rstrip("/").endswith("/v1/messages")
                if not anthropic and not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
                r = fake.next()
                if isinstance(r, Fail):
                    return self._send(r.status, fake.error_body(r, anthropic), r.headers)
                model = body.get("model", "fake")
                self._send(200, fake.anthropic_body(r, model) if anthropic else fake.openai_body(r, model))

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
