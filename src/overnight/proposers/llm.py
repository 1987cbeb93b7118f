"""The built-in LLM agent: a tool-calling loop over the official `openai` or `anthropic` SDK.

One proposal is one conversation: the assembled context goes in, the model
views and edits files through the tools in proposers/tools.py, and it ends by
calling `finish(description)`. The harness, not the model, runs the experiment.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from overnight.proposers import context, dedupe, operators
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext, StopProposing
from overnight.proposers.cost import PriceError, PriceTable
from overnight.proposers.tools import TOOLS, Toolbox
from overnight.storage.ledger import Experiment
from overnight.track import Track

NO_KEY = "overnight-no-key"  # local OpenAI-compatible servers accept any key
SYSTEM = (
    "You are an autonomous research engineer improving a codebase one experiment at a time. "
    "You edit files with the tools; a harness then runs the experiment under a fixed budget, measures "
    "the metric with a trusted evaluator and keeps the change only if it is better. Work in small, "
    "deliberate steps: look at the code, make one focused change, optionally run the smoke check, "
    "then call finish with a one-line description. Always act through tool calls."
)
INSTRUCTIONS = (
    "Propose the next experiment now. Use `view` and `search` to read the editable files, `str_replace` "
    "or `create` to change them, `smoke` to check they still run, `note` to save a lesson for future agents "
    "and `add_idea` to queue a follow-up. Then call `finish` with a one-line description of the change. "
    "Do not try to run the experiment or report a metric yourself."
)
NUDGE = "Please act through the tools: edit the files, then call finish(description) to end this proposal."


class CallFailed(Exception):
    """An API call failed for good (retries used up, bad request); this proposal becomes an `error`."""


@dataclass
class Call:
    id: str
    name: str
    args: dict[str, Any] | None
    problem: str = ""  # why args could not be parsed


@dataclass
class Turn:
    text: str
    calls: list[Call]
    tokens_in: int
    tokens_out: int


class Backend(Protocol):
    def start(self, system: str, prompt: str) -> None: ...
    def step(self) -> Turn: ...
    def answer(self, results: list[tuple[Call, str, bool]]) -> None: ...
    def nudge(self, text: str) -> None: ...


def parse_args(raw: Any) -> tuple[dict[str, Any] | None, str]:
    if isinstance(raw, dict):
        return raw, ""
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError) as e:
        return None, f"arguments are not valid JSON ({e}); send one JSON object"
    if not isinstance(value, dict):
        return None, "arguments must be a JSON object"
    return value, ""


class OpenAIBackend:
    def __init__(self, model: str, base_url: str | None, key: str, max_tokens: int, timeout: float):
        import openai

        self.model, self.max_tokens = model, max_tokens
        self.client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)
        # OpenAI's newer models reject max_tokens; OpenAI-compatible servers all know max_tokens.
        self.limit_key = "max_completion_tokens" if base_url is None else "max_tokens"
        self.tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")}}
                      for t in TOOLS]
        self.messages: list[dict[str, Any]] = []

    def start(self, system: str, prompt: str) -> None:
        self.messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]

    def step(self) -> Turn:
        r = self.client.chat.completions.create(model=self.model, messages=self.messages, tools=self.tools,
                                                **{self.limit_key: self.max_tokens})
        if not r.choices:
            raise CallFailed("the server returned no choices")
        m = r.choices[0].message
        calls, wire = [], []
        for tc in m.tool_calls or []:
            fn = getattr(tc, "function", None)
            if fn is None:
                continue
            cid = tc.id or f"call_{uuid.uuid4().hex[:12]}"
            args, problem = parse_args(fn.arguments)
            calls.append(Call(cid, fn.name, args, problem))
            raw = fn.arguments if isinstance(fn.arguments, str) else json.dumps(fn.arguments)
            wire.append({"id": cid, "type": "function", "function": {"name": fn.name, "arguments": raw}})
        self.messages.append({"role": "assistant", "content": m.content or "", **({"tool_calls": wire} if wire else {})})
        u = r.usage
        return Turn(m.content or "", calls, (u.prompt_tokens or 0) if u else 0, (u.completion_tokens or 0) if u else 0)

    def answer(self, results: list[tuple[Call, str, bool]]) -> None:
        self.messages += [{"role": "tool", "tool_call_id": c.id, "content": text} for c, text, _ in results]

    def nudge(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


class AnthropicBackend:
    def __init__(self, model: str, base_url: str | None, key: str, max_tokens: int, timeout: float):
        import anthropic

        if base_url:  # the SDK adds /v1/messages itself; users paste URLs ending in /v1
            base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model, self.max_tokens = model, max_tokens
        self.client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)
        self.tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                      for t in TOOLS]
        self.system = ""
        self.messages: list[dict[str, Any]] = []

    def start(self, system: str, prompt: str) -> None:
        self.system, self.messages = system, [{"role": "user", "content": prompt}]

    def step(self) -> Turn:
        r = self.client.messages.create(model=self.model, system=self.system, messages=self.messages,
                                        tools=self.tools, max_tokens=self.max_tokens)
        texts, calls, blocks = [], [], []
        for b in r.content:
            if b.type == "text":
                texts.append(b.text)
                blocks.append({"type": "text", "text": b.text})
            elif b.type == "tool_use":
                args, problem = parse_args(b.input)
                calls.append(Call(b.id, b.name, args, problem))
                blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
            else:  # thinking and future block types go back exactly as received
                blocks.append(b.model_dump(mode="json", exclude_none=True))
        self.messages.append({"role": "assistant", "content": blocks or [{"type": "text", "text": "(no reply)"}]})
        u = r.usage
        tin = (u.input_tokens or 0) + (getattr(u, "cache_creation_input_tokens", 0) or 0) + \
            (getattr(u, "cache_read_input_tokens", 0) or 0)
        return Turn("\n".join(texts), calls, tin, u.output_tokens or 0)

    def answer(self, results: list[tuple[Call, str, bool]]) -> None:
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": text, "is_error": err} for c, text, err in results]})

    def nudge(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


def pick_provider(model: str, provider: str | None) -> str:
    if provider:
        p = provider.lower()
        if p not in ("openai", "anthropic"):
            raise FatalProposerError(f"--provider must be openai or anthropic, not {provider!r}")
        return p
    return "anthropic" if model.lower().startswith("claude") else "openai"


def api_key(provider: str, base_url: str | None) -> str:
    var = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
    key = os.environ.get(var, "").strip()
    if key:
        return key
    if base_url:
        return NO_KEY
    raise FatalProposerError(f"no API key: set {var}, or pass --base-url for a local server that needs none")


def classify(e: Exception) -> str | None:
    """auth / fatal / retry / connection / error, or None for an exception that is not the SDK's."""
    mod = type(e).__module__.split(".")[0]
    if mod not in ("openai", "anthropic"):
        return None
    status = getattr(e, "status_code", None)
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "fatal"
    if status in (408, 409, 429) or (status is not None and status >= 500):
        return "retry"
    if status is None and ("Connection" in type(e).__name__ or "Timeout" in type(e).__name__):
        return "connection"
    return "error"


def retry_after(e: Exception) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    for key, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            if headers.get(key) is not None:
                return max(0.0, float(headers[key]) * scale)
        except (TypeError, ValueError):
            pass
    return None


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    calls: int = 0
    last_in: int = 0
    log: list[str] = field(default_factory=list)


class LLMProposer:
    uses_ideas = True  # the loop claims an idea from the queue for each proposal

    def __init__(self, track: Track, model: str | None = None, base_url: str | None = None,
                 provider: str | None = None, max_cost: float | None = None, max_turns: int = 30,
                 max_tokens: int = 4096, max_proposal_tokens: int = 500_000, retries: int = 5,
                 backoff: float = 1.0, timeout: float = 600.0, smoke_timeout: float = 60.0, **_: Any):
        if not model:
            raise FatalProposerError("--proposer llm needs --model NAME (e.g. gpt-4.1, claude-sonnet-4-5, "
                                     "or the model your --base-url server serves)")
        self.track, self.model, self.base_url = track, model, base_url
        self.provider = pick_provider(model, provider)
        self.name = f"llm:{model}"
        self.max_cost, self.max_turns, self.max_tokens = max_cost, max_turns, max_tokens
        self.max_proposal_tokens, self.retries, self.backoff = max_proposal_tokens, retries, backoff
        self.smoke_timeout = smoke_timeout
        try:
            self.price = PriceTable.for_state(track.paths.state).price(model)
        except PriceError as e:
            raise FatalProposerError(str(e)) from None
        try:
            __import__(self.provider)
        except ImportError:
            raise FatalProposerError(f"the {self.provider} SDK is not installed: pip install {self.provider}") from None
        key = api_key(self.provider, base_url)
        cls = AnthropicBackend if self.provider == "anthropic" else OpenAIBackend
        self.backend_factory = lambda: cls(model, base_url, key, max_tokens, timeout)
        self.backend_factory()  # fail now on a bad base URL, not at the first proposal
        self._stop_next: str | None = None
        self._recorded_at_start: float | None = None
        self._spent_here = 0.0  # by this process, recorded or not
        self._memory = operators.Memory()  # stale nodes, operations not yet in the ledger

    # --- money ------------------------------------------------------------------------------------
    def spent(self, tag: str) -> float:
        """The ledger's total, or more: a pipelined loop records a proposal after the next one starts."""
        recorded = self.track.ledger.cost_usd(tag)
        if self._recorded_at_start is None:
            self._recorded_at_start = recorded
        return max(recorded, self._recorded_at_start + self._spent_here)

    def _next_call_cost(self, est_in: int) -> float:
        return self.price.cost(est_in, self.max_tokens)  # worst case: a full-length reply

    # --- the conversation -------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> Proposal:
        if self._stop_next:
            raise StopProposing(self._stop_next)
        op = operators.prepare(self.track, ctx.tag, ctx.workdir, ctx.parent_commit, self._memory)
        return operators.stamp(self._converse(ctx, "\n\n".join(t for t in (op.text, INSTRUCTIONS) if t)), op)

    def withdraw(self, meta: dict[str, Any]) -> None:
        """A proposal that will never run (dropped on rebase): its operation may be started again."""
        self._memory.forget(meta)

    def _converse(self, ctx: ProposalContext, instructions: str) -> Proposal:
        prompt = context.assemble(self.track, ctx.tag, ctx.idea, ctx.workdir, instructions)
        spent = self.spent(ctx.tag)
        est = self._next_call_cost(len(prompt + SYSTEM) // 3)
        if self.max_cost is not None and spent + est > self.max_cost:
            raise StopProposing(f"--max-cost ${self.max_cost:g}: spent ${spent:.4f}, the next call may cost ${est:.4f}")
        backend = self.backend_factory()
        backend.start(SYSTEM, prompt)
        tools = Toolbox(self.track, ctx.workdir, source=self.name, smoke_timeout=self.smoke_timeout, stop=ctx.stop)
        u = Usage(log=[f"## prompt\n{prompt}"])
        quiet = 0
        repeats = dedupe.Gate(self.track, ctx.tag, ctx.workdir)
        for _ in range(self.max_turns):
            if ctx.stop.is_set():
                return self._result(u, error="interrupted")
            if u.tokens_in + u.tokens_out >= self.max_proposal_tokens:
                return self._result(u, error=f"token limit per proposal reached ({self.max_proposal_tokens})")
            est = self._next_call_cost(u.last_in + 2000)
            if self.max_cost is not None and spent + u.cost + est > self.max_cost:
                self._stop_next = f"--max-cost ${self.max_cost:g} reached (spent ${spent + u.cost:.4f})"
                return self._result(u, error=self._stop_next + " in the middle of a proposal")
            try:
                turn = self._call(backend, ctx)
            except CallFailed as e:
                return self._result(u, error=f"{self.provider} API: {e}")
            u.calls += 1
            u.tokens_in += turn.tokens_in
            u.tokens_out += turn.tokens_out
            u.last_in = turn.tokens_in
            cost = self.price.cost(turn.tokens_in, turn.tokens_out)
            u.cost += cost
            self._spent_here += cost
            if turn.text.strip():
                u.log.append(f"## assistant\n{turn.text.strip()}")
            if not turn.calls and tools.edits and turn.text.strip():
                # Hosted models often end with a summary instead of calling finish: the edits stand.
                summary = turn.text.strip().splitlines()[0][:200]
                if (why := repeats.send_back(summary, u.log)) is None:
                    return self._result(u, description=summary, meta=repeats.meta)
                backend.nudge(why)
                continue
            if not turn.calls:
                quiet += 1
                if quiet >= 3:
                    return self._result(u, error="the model stopped without calling finish")
                backend.nudge(NUDGE)
                u.log.append(f"## harness\n{NUDGE}")
                continue
            quiet = 0
            results = []
            for c in turn.calls:
                text, err = (f"error: {c.problem}", True) if c.args is None else tools.call(c.name, c.args)
                results.append((c, text, err))
                u.log.append(f"→ {c.name}({json.dumps(c.args)[:600]})\n← {text[:2000]}")
            if tools.finished is not None:
                if (why := repeats.send_back(tools.finished, u.log)) is None:
                    return self._result(u, description=tools.finished, meta=repeats.meta)
                tools.finished = None  # the finish call is answered with the reason and the model goes on
                results = [(c, text, err) if c.name != "finish" else (c, why, True) for c, text, err in results]
            backend.answer(results)
        return self._result(u, error=f"the model did not call finish within {self.max_turns} turns")

    def _call(self, backend: Backend, ctx: ProposalContext) -> Turn:
        """One API call with exponential backoff on 429/5xx/connection errors; auth errors stop the loop."""
        for attempt in range(self.retries + 1):
            try:
                return backend.step()
            except CallFailed:
                raise
            except Exception as e:
                kind = classify(e)
                if kind is None:
                    raise
                where = self.base_url or f"the {self.provider} API"
                if kind == "auth":
                    var = "ANTHROPIC_API_KEY" if self.provider == "anthropic" else "OPENAI_API_KEY"
                    raise FatalProposerError(f"{where} rejected the credentials ({e}); check {var}") from None
                if kind == "fatal":
                    raise FatalProposerError(f"{where}: {e} (is --model {self.model!r} served there?)") from None
                if kind in ("retry", "connection") and attempt < self.retries:
                    delay = min(retry_after(e) or self.backoff * 2**attempt, 60.0)
                    if ctx.stop.wait(delay):
                        raise CallFailed("interrupted") from None
                    continue
                if kind == "connection":
                    raise FatalProposerError(f"cannot reach {where}: {e}") from None
                raise CallFailed(str(e)) from None
        raise CallFailed("retries used up")  # unreachable: the last attempt raises above

    def _result(self, u: Usage, description: str = "", error: str | None = None,
                meta: dict[str, Any] | None = None) -> Proposal:
        if error:
            u.log.append(f"## harness\n{error}")
        transcript = "\n\n".join(u.log)
        return Proposal(description=description or (error or ""), proposer=self.name, error=error,
                        transcript=context.clip(transcript, 400_000, "transcript"), tokens_in=u.tokens_in,
                        tokens_out=u.tokens_out, cost_usd=round(u.cost, 6),
                        meta={"model": self.model, "provider": self.provider, "calls": u.calls, **(meta or {})})

    def observe(self, experiment: Experiment) -> None:
        """Nothing to keep in memory: the next prompt is rebuilt from the ledger."""

    def baseline(self, experiment: Experiment) -> None:
        """The baseline reaches the model through the history digest."""
