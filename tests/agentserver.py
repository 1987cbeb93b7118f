"""A scripted model server for the real coding-agent CLIs, on 127.0.0.1.

It speaks Anthropic Messages (streamed or not), OpenAI Responses (streamed) and Chat
Completions (streamed or not), and Gemini `generateContent` / `streamGenerateContent`.
Each request that carries tools is a turn of the agent: the script reads the file
(where the CLI's edit tool wants that first), edits it with the CLI's own edit tool,
then answers with text that ends in `DESCRIPTION: ...`. A request without tools
(titles, summaries, checks) gets a short text. Usage is reported per request from the
request's size, and every request and the usage sent back are recorded.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Edit:
    file: str  # relative to the track folder
    old: str
    new: str
    description: str
    prefix: str = "I changed the file."  # text before the DESCRIPTION line
    peek: str | None = None  # a file the script tries to read first, with Codex's shell tool


@dataclass
class Usage:
    tokens_in: int
    tokens_out: int


@dataclass
class Served:
    path: str
    body: dict[str, Any]
    agent: bool
    usage: Usage


PATH_RE = re.compile(r"/[\w./+-]+")


def tool_names(proto: str, body: dict[str, Any]) -> list[str]:
    if proto == "gemini":
        return [f.get("name", "") for t in body.get("tools") or [] for f in t.get("functionDeclarations") or []]
    out = []
    for t in body.get("tools") or []:
        out.append(t.get("name") or (t.get("function") or {}).get("name") or t.get("type", ""))
    return out


def stage_of(proto: str, body: dict[str, Any]) -> int:
    """How many tool results the conversation already holds: the script's position."""
    text = json.dumps(body)
    keys = {"anthropic": '"type": "tool_result"', "responses": '_call_output"', "chat": '"role": "tool"',
            "gemini": '"functionResponse"'}
    return text.count(keys[proto])


class AgentServer:
    def __init__(self, edit: Edit, model: str = "test-model"):
        self.edit, self.model = edit, model
        self.served: list[Served] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.handle_error = lambda *a: None  # a CLI that exits with a connection open is not news
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> AgentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def agent_requests(self) -> list[Served]:
        return [s for s in self.served if s.agent]

    def totals(self) -> Usage:
        return Usage(sum(s.usage.tokens_in for s in self.served), sum(s.usage.tokens_out for s in self.served))

    # --- the script -------------------------------------------------------------------------------
    def target(self, body: dict[str, Any]) -> str:
        """The absolute path of the file to edit: found among the paths the CLI mentions."""
        for p in PATH_RE.findall(json.dumps(body)):
            for cand in (p, p.rstrip("./")):
                if cand.endswith("/" + self.edit.file) and os.path.isfile(cand):
                    return cand
                if os.path.isfile(os.path.join(cand, self.edit.file)):
                    return os.path.join(cand, self.edit.file)
        return self.edit.file

    def final_text(self) -> str:
        return f"{self.edit.prefix}\nDESCRIPTION: {self.edit.description}"

    def step(self, proto: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
        """The next action: (tool name, arguments) or the final text."""
        names, stage, e = tool_names(proto, body), stage_of(proto, body), self.edit
        plan: list[tuple[str, dict[str, Any]]] = []
        path = self.target(body)
        if "Edit" in names and "Read" in names:  # Claude Code: a file must be read before it is edited
            plan = [("Read", {"file_path": path}),
                    ("Edit", {"file_path": path, "old_string": e.old, "new_string": e.new})]
        elif "edit" in names and "read" in names:  # opencode, same rule
            plan = [("read", {"filePath": path}),
                    ("edit", {"filePath": path, "oldString": e.old, "newString": e.new})]
        elif "replace" in names:  # Gemini CLI
            plan = [("replace", {"file_path": path, "old_string": e.old, "new_string": e.new,
                                 "instruction": e.description})]
        elif "apply_patch" in names:  # Codex
            patch = (f"*** Begin Patch\n*** Update File: {path}\n@@\n-{e.old}\n+{e.new}\n*** End Patch\n")
            plan = [("exec_command", {"cmd": f"cat {e.peek}"})] if e.peek else []
            plan += [("apply_patch", {"input": patch})]
        if stage < len(plan):
            return plan[stage]
        return self.final_text()

    def aider_text(self, body: dict[str, Any]) -> str:
        """aider edits through its reply's text: SEARCH/REPLACE blocks, or the whole file in a fence."""
        e, text = self.edit, json.loads(json.dumps(body.get("messages", [])))
        flat = "\n".join(str(m.get("content", "")) for m in text)
        if "<<<<<<< SEARCH" in flat:
            block = f"{e.file}\n```\n<<<<<<< SEARCH\n{e.old}\n=======\n{e.new}\n>>>>>>> REPLACE\n```"
        else:
            m = re.search(re.escape(e.file) + r"\n```[\w-]*\n(.*?)```", flat, re.DOTALL)
            whole = (m.group(1) if m else "").replace(e.old, e.new)
            block = f"{e.file}\n```\n{whole}```"
        return f"{e.prefix}\n\n{block}\n\nDESCRIPTION: {e.description}\n"

    # --- HTTP ---------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = {"object": "list", "data": [{"id": srv.model, "object": "model", "owned_by": "test"}],
                        "models": [{"name": f"models/{srv.model}"}]}
                self._json(200, data)

            def do_HEAD(self) -> None:
                self._json(200, {})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                path = self.path.split("?")[0]
                if "/nowhere/" in path:  # a wrong base URL, for error tests
                    return self._json(404, {"error": {"code": 404, "message": f"no route {path}",
                                                      "status": "NOT_FOUND"}})
                if path.endswith("/messages/count_tokens"):
                    return self._json(200, {"input_tokens": len(raw) // 4})
                if path.endswith(":countTokens"):
                    return self._json(200, {"totalTokens": len(raw) // 4})
                proto = ("anthropic" if path.endswith("/messages") else "responses" if path.endswith("/responses")
                         else "chat" if path.endswith("/chat/completions") else
                         "gemini" if "generatecontent" in path.lower() else "")
                if not proto:
                    return self._json(404, {"error": {"message": f"no route {path}"}})
                names = tool_names(proto, body)
                agent = bool(names)
                usage = Usage(max(1, len(raw) // 4), 12)
                aider = proto == "chat" and not names and "Act as an expert software developer" in raw.decode()
                agent = agent or aider
                action: tuple[str, dict[str, Any]] | str
                if aider:
                    action = srv.aider_text(body)
                elif agent:
                    action = srv.step(proto, body)
                else:
                    action = "ok"
                with srv.lock:
                    srv.served.append(Served(self.path, body, agent, usage))
                stream = bool(body.get("stream")) or "stream" in path.lower() or proto == "responses"
                getattr(self, f"_{proto}")(body, action, usage, stream)

            # Each renderer sends one assistant turn: a tool call or text.
            def _anthropic(self, body: dict, action: Any, u: Usage, stream: bool) -> None:
                model = body.get("model", srv.model)
                if isinstance(action, str):
                    block: dict[str, Any] = {"type": "text", "text": action}
                    stop = "end_turn"
                else:
                    block = {"type": "tool_use", "id": f"toolu_{len(srv.served)}", "name": action[0],
                             "input": action[1]}
                    stop = "tool_use"
                usage = {"input_tokens": u.tokens_in, "output_tokens": u.tokens_out,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
                msg = {"id": f"msg_{len(srv.served)}", "type": "message", "role": "assistant", "model": model,
                       "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage}
                if not stream:
                    return self._json(200, msg)
                start = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
                events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": start})]
                if block["type"] == "text":
                    events += [("content_block_start", {"type": "content_block_start", "index": 0,
                                                        "content_block": {"type": "text", "text": ""}}),
                               ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "text_delta", "text": action}})]
                else:
                    events += [("content_block_start", {"type": "content_block_start", "index": 0,
                                                        "content_block": {**block, "input": {}}}),
                               ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                                   "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})]
                events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                           ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop,
                            "stop_sequence": None}, "usage": {"output_tokens": u.tokens_out}}),
                           ("message_stop", {"type": "message_stop"})]
                self._sse(events)

            def _responses(self, body: dict, action: Any, u: Usage, stream: bool) -> None:
                rid = f"resp_{len(srv.served)}"
                if isinstance(action, str):
                    item: dict[str, Any] = {"type": "message", "role": "assistant", "id": f"msg_{rid}",
                                            "status": "completed",
                                            "content": [{"type": "output_text", "text": action, "annotations": []}]}
                else:
                    kinds = {t.get("name"): t.get("type") for t in body.get("tools") or []}
                    if kinds.get(action[0]) == "custom":
                        item = {"type": "custom_tool_call", "id": f"ctc_{rid}", "call_id": f"call_{rid}",
                                "name": action[0], "input": action[1]["input"], "status": "completed"}
                    else:
                        item = {"type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}",
                                "name": action[0], "arguments": json.dumps(action[1]), "status": "completed"}
                usage = {"input_tokens": u.tokens_in, "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens": u.tokens_out, "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": u.tokens_in + u.tokens_out}
                resp = {"id": rid, "object": "response", "model": body.get("model", srv.model), "status": "completed",
                        "output": [item], "usage": usage}
                self._sse([("response.created", {"type": "response.created", "response": {**resp, "output": [],
                                                                                          "status": "in_progress"}}),
                           ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                          "item": item}),
                           ("response.completed", {"type": "response.completed", "response": resp})])

            def _chat(self, body: dict, action: Any, u: Usage, stream: bool) -> None:
                model = body.get("model", srv.model)
                if isinstance(action, str):
                    delta: dict[str, Any] = {"role": "assistant", "content": action}
                    finish = "stop"
                else:
                    delta = {"role": "assistant", "content": None, "tool_calls": [{
                        "index": 0, "id": f"call_{len(srv.served)}", "type": "function",
                        "function": {"name": action[0], "arguments": json.dumps(action[1])}}]}
                    finish = "tool_calls"
                usage = {"prompt_tokens": u.tokens_in, "completion_tokens": u.tokens_out,
                         "total_tokens": u.tokens_in + u.tokens_out}
                base = {"id": f"chatcmpl-{len(srv.served)}", "created": 1700000000, "model": model}
                if not stream:
                    msg = {k: v for k, v in delta.items() if k != "tool_calls"}
                    if "tool_calls" in delta:
                        msg["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in delta["tool_calls"]]
                    return self._json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "message": msg, "finish_reason": finish}]})
                chunk = {**base, "object": "chat.completion.chunk"}
                self._sse([(None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
                           (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
                           (None, {**chunk, "choices": [], "usage": usage})], done=True)

            def _gemini(self, body: dict, action: Any, u: Usage, stream: bool) -> None:
                part = {"text": action} if isinstance(action, str) else \
                    {"functionCall": {"name": action[0], "args": action[1]}}
                resp = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP",
                                        "index": 0}],
                        "usageMetadata": {"promptTokenCount": u.tokens_in, "candidatesTokenCount": u.tokens_out,
                                          "totalTokenCount": u.tokens_in + u.tokens_out},
                        "modelVersion": srv.model}
                if not stream:
                    return self._json(200, resp)
                self._sse([(None, resp)])

            def _json(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _sse(self, events: list[tuple[str | None, dict]], done: bool = False) -> None:
                out = "".join((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                              for name, data in events)
                if done:
                    out += "data: [DONE]\n\n"
                raw = out.encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
