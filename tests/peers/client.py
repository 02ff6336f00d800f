#!/usr/bin/env python3
"""Scripted MCP client built on the official Python SDK (`mcp`, pinned in tests/python/requirements.txt).

mcptape's tests use it as a real, independent MCP client: it drives a real server (directly, or through
`mcptape record -- ...` / `mcptape serve`) through a fixed script and prints ONE JSON document on stdout
with the normalized result of every step, so two runs against the same server give byte-identical output.
stderr is for logs (this script's and the spawned server's). Exit status is 0 on success, 1 if a step
failed (stderr names the step: "[client.py] FAILED: step 'tool_echo' failed: ..."), 2 on bad usage.

The document holds the SDK's parsed view of each result (pydantic models dumped with wire aliases), not the
raw wire bytes: the SDK fills defaults such as "resultType": "complete", "cacheScope", "ttlMs" even on a
2025-11-25 connection. Large deterministic payloads are reduced to {len, sha256}. Normalizations (all
documented where they are applied): UUIDs, "created at <time>" stamps, the random level of simulated log
messages, dates/clock times/weekdays in mcp-server-time answers, the roots/list request count, and
list_changed notifications over Streamable HTTP.

Usage:
    python client.py [--server everything|time] [--era 2025-11-25|2026-07-28|auto]
                     [--transport stdio|http|sse] [--url URL] [--timeout S] [--total-timeout S]
                     [--timings] [-- SERVER_CMD...]

    --server everything   (default) script for @modelcontextprotocol/server-everything
    --server time         script for mcp-server-time (PyPI)
    --era 2025-11-25      (default) initialize handshake (SDK mode="legacy"); fails unless 2025-11-25 is negotiated
    --era 2026-07-28      stateless era: probes `server/discover` (SDK mode="auto") and fails unless the server
                          adopts 2026-07-28 (server-everything does not; mcp-server-time does)
    --era auto            SDK mode="auto": discover probe, falls back to initialize; records what was negotiated
    --transport stdio     (default) spawn SERVER_CMD (everything after `--`) with the SDK's stdio client.
                          Without SERVER_CMD: node_modules/.bin/mcp-server-everything next to this file, or
                          `python -m mcp_server_time --local-timezone UTC` for --server time.
    --transport http      Streamable HTTP to --url (e.g. http://127.0.0.1:3001/mcp)
    --transport sse       deprecated 2024-11-05 HTTP+SSE transport, --url is the GET endpoint (e.g. .../sse)
    --timeout S           per-request/per-step timeout (default 60); --total-timeout S: whole run (default 300),
                          on expiry the step in progress is named and the process exits 1 (never hangs)

Examples:
    python client.py -- npx --prefix tests/peers mcp-server-everything stdio
    python client.py -- mcptape record --out DIR -- npx --prefix tests/peers mcp-server-everything stdio
    python client.py --transport http --url http://127.0.0.1:3001/mcp
    python client.py --server time --era 2026-07-28 -- python -m mcp_server_time --local-timezone UTC
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import anyio

import mcp.types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

# Logging/ping/roots/sampling are deprecated as of 2026-07-28 in the SDK; we exercise them on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

HERE = Path(__file__).resolve().parent
ERAS = {"2025-11-25": "legacy", "2026-07-28": "auto", "auto": "auto"}

# ---- fixed answers to server->client requests -------------------------------------------------------
FIXED_SAMPLING_TEXT = "mcptape fixed sampling reply"
FIXED_SAMPLING_MODEL = "mcptape-fixed-model"
FIXED_ELICITATION_CONTENT: dict[str, Any] = {
    "name": "Ada Lovelace",
    "check": True,
    "firstLine": "It was a dark and stormy night.",
    "email": "ada@example.invalid",
    "homepage": "https://example.invalid/ada",
    "birthdate": "1815-12-10",
    "integer": 42,
    "number": 3.14,
    "untitledSingleSelectEnum": "Monica",
    "untitledMultipleSelectEnum": ["Guitar", "Piano"],
    "titledSingleSelectEnum": "hero-1",
    "titledMultipleSelectEnum": ["fish-1"],
    "legacyTitledEnum": "pet-1",
}
FIXED_ROOTS = [
    types.Root(uri="file:///mcptape/peers/root-a", name="root-a"),
    types.Root(uri="file:///mcptape/peers/root-b", name="root-b"),
]


CURRENT_STEP = "startup"


def log(msg: str) -> None:
    print(f"[client.py] {msg}", file=sys.stderr, flush=True)


class StepFailed(Exception):
    def __init__(self, step: str, cause: BaseException | str):
        super().__init__(f"step {step!r} failed: {cause!r}" if not isinstance(cause, str) else f"step {step!r} failed: {cause}")
        self.step = step


# ---- normalization -----------------------------------------------------------------------------------
# Every rule below exists because the named server puts something run-dependent into a result. They are
# applied to every string in the output document, after the step-specific rules further down.
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# server-everything: toggle-simulated-logging / log data name the session; over HTTP it is a random UUID
# (Mcp-Session-Id), over stdio the literal "undefined". -> "<uuid>"
# server-everything: dynamic text/blob resources (and resource-prompt, which embeds one) say
# "created at <Date.toLocaleTimeString()>" e.g. "12:34:56 PM". -> "created at <time>"
CREATED_AT_RE = re.compile(r"created at [^\n\"]*?\d{1,2}:\d{2}:\d{2}(?:\s?[AP]M)?")


def norm_str(s: str) -> str:
    s = UUID_RE.sub("<uuid>", s)
    s = CREATED_AT_RE.sub("created at <time>", s)
    return s


def norm(obj: Any) -> Any:
    if isinstance(obj, str):
        return norm_str(obj)
    if isinstance(obj, list):
        return [norm(x) for x in obj]
    if isinstance(obj, dict):
        return {k: norm(v) for k, v in obj.items()}
    return obj


def dump(model: Any) -> Any:
    """A pydantic SDK object as wire-shaped JSON (camelCase aliases, no nulls)."""
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


def digest(text: str | bytes) -> dict[str, Any]:
    """Large deterministic payloads (docs, images) are summarized as length + sha256 to keep output small."""
    b = text.encode() if isinstance(text, str) else text
    return {"len": len(b), "sha256": hashlib.sha256(b).hexdigest()}


def norm_blob_resource(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """server-everything's dynamic blob resource is base64 of a text carrying a timestamp: decode,
    normalize the timestamp, and keep the decoded (normalized) text instead of the base64."""
    out = []
    for c in contents:
        c = dict(c)
        if "blob" in c:
            c["blob_decoded"] = norm_str(base64.b64decode(c.pop("blob")).decode("utf-8", "replace"))
        out.append(c)
    return out


# ---- the recording state shared with callbacks -------------------------------------------------------
class Observed:
    def __init__(self) -> None:
        self.sampling_requests: list[Any] = []
        self.elicitation_requests: list[Any] = []
        self.roots_requests = 0
        self.log_messages: list[dict[str, Any]] = []
        self.notification_methods: set[str] = set()
        self.transport_errors: list[str] = []
        self.log_event = anyio.Event()

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        log("<- sampling/createMessage")
        self.sampling_requests.append(dump(params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=FIXED_SAMPLING_TEXT),
            model=FIXED_SAMPLING_MODEL,
            stop_reason="endTurn",
        )

    async def elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        log("<- elicitation/create")
        p = dump(params)
        # The requested schema is long; keep its message, property names and required list.
        schema = p.get("requestedSchema") or {}
        self.elicitation_requests.append(
            {
                "mode": p.get("mode", "form"),
                "message": p.get("message"),
                "properties": sorted((schema.get("properties") or {}).keys()),
                "required": schema.get("required"),
            }
        )
        props = (schema.get("properties") or {}).keys()
        content = {k: v for k, v in FIXED_ELICITATION_CONTENT.items() if k in props}
        return types.ElicitResult(action="accept", content=content)

    async def list_roots(self, context: Any) -> types.ListRootsResult:
        log("<- roots/list")
        self.roots_requests += 1
        return types.ListRootsResult(roots=FIXED_ROOTS)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log_messages.append(dump(params))
        self.log_event.set()

    async def message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log(f"transport error: {message!r}")
            self.transport_errors.append(type(message).__name__)
            return
        method = getattr(getattr(message, "root", message), "method", None) or type(message).__name__
        self.notification_methods.add(str(method))


# ---- script helpers ----------------------------------------------------------------------------------
class Script:
    def __init__(self, client: Client, obs: Observed, timeout: float):
        self.c = client
        self.obs = obs
        self.timeout = timeout
        self.steps: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    async def step(self, name: str, fn, *args, **kwargs) -> Any:
        global CURRENT_STEP
        CURRENT_STEP = name
        log(f"step {name}")
        t0 = time.monotonic()
        try:
            with anyio.fail_after(self.timeout):
                value = await fn(*args, **kwargs)
        except StepFailed:
            raise
        except BaseException as e:  # noqa: BLE001 - any failure names the step
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise StepFailed(name, e) from e
        self.timings[name] = round(time.monotonic() - t0, 3)
        return value

    async def record(self, name: str, fn, *args, post=None, **kwargs) -> Any:
        value = await self.step(name, fn, *args, **kwargs)
        out = dump(value)
        if post is not None:
            out = post(out)
        self.steps[name] = out
        return value

    async def call_tool(self, name: str, tool: str, args: dict[str, Any] | None = None, post=None, **kw) -> Any:
        return await self.record(name, self.c.call_tool, tool, args or {}, post=post, **kw)

    async def expect_error(self, name: str, fn, *args, **kwargs) -> None:
        """A step that must fail with a JSON-RPC error; records code + message."""
        global CURRENT_STEP
        CURRENT_STEP = name
        log(f"step {name}")
        try:
            with anyio.fail_after(self.timeout):
                value = await fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            err = getattr(e, "error", None)
            self.steps[name] = {"error": {"code": getattr(err, "code", None), "message": getattr(err, "message", str(e))}}
            return
        # Some servers answer with an isError tool result instead; that is recorded too.
        self.steps[name] = {"result": dump(value)}


def require(cond: bool, step: str, what: str) -> None:
    if not cond:
        raise StepFailed(step, what)


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")


# ---- server-everything script ------------------------------------------------------------------------
async def script_everything(s: Script, era: str) -> None:
    c, obs = s.c, s.obs
    legacy = c.protocol_version != "2026-07-28"
    if legacy:
        # First thing: debug level, so every log the server emits passes the filter (the server sends an
        # info log when it receives roots ~350 ms after `initialized`; a higher level would race with it).
        await s.record("logging_set_level", c.set_logging_level, "debug")
        await s.record("ping", c.send_ping)

    tools = await s.record("tools_list", c.list_tools)
    names = [t.name for t in tools.tools]
    for needed in ("echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request",
                   "trigger-elicitation-request", "get-roots-list"):
        require(needed in names, "tools_list", f"tool {needed!r} not listed (got {names})")

    r = await s.call_tool("tool_echo", "echo", {"message": "hello from mcptape"})
    require(text_of(dump(r)) == "Echo: hello from mcptape", "tool_echo", f"unexpected echo {dump(r)}")
    r = await s.call_tool("tool_get_sum", "get-sum", {"a": 17, "b": 25})
    require("42" in text_of(dump(r)), "tool_get_sum", f"unexpected sum {dump(r)}")
    await s.call_tool("tool_get_structured_content", "get-structured-content", {"location": "Chicago"})
    await s.call_tool("tool_get_annotated_message", "get-annotated-message",
                      {"messageType": "success", "includeImage": False})
    # The tiny image is a fixed PNG: keep its digest, not the base64.
    await s.call_tool("tool_get_tiny_image", "get-tiny-image",
                      post=lambda r: {**r, "content": [
                          ({**b, "data": digest(b["data"])} if b.get("type") == "image" else b) for b in r["content"]]})

    # progress: 4 steps over 1 s; notifications/progress are collected in order (they precede the result).
    progress: list[dict[str, Any]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": p, "total": total, **({"message": message} if message else {})})

    await s.call_tool("tool_long_running_operation", "trigger-long-running-operation",
                      {"duration": 1, "steps": 4}, progress_callback=on_progress)
    s.steps["progress_notifications"] = progress
    require(len(progress) == 4, "tool_long_running_operation", f"expected 4 progress notifications, got {progress}")

    # server->client requests answered by the fixed callbacks above
    await s.call_tool("tool_trigger_sampling", "trigger-sampling-request", {"prompt": "Say hi to mcptape", "maxTokens": 32})
    s.steps["sampling_requests_seen"] = obs.sampling_requests
    require(len(obs.sampling_requests) == 1, "tool_trigger_sampling", "no sampling/createMessage request received")
    require(FIXED_SAMPLING_TEXT in text_of(s.steps["tool_trigger_sampling"]), "tool_trigger_sampling",
            "server did not echo the fixed sampling answer")

    await s.call_tool("tool_trigger_elicitation", "trigger-elicitation-request", {})
    s.steps["elicitation_requests_seen"] = obs.elicitation_requests
    require(len(obs.elicitation_requests) == 1, "tool_trigger_elicitation", "no elicitation/create request received")
    require("Ada Lovelace" in text_of(s.steps["tool_trigger_elicitation"]), "tool_trigger_elicitation",
            "server did not echo the fixed elicitation answer")

    await s.call_tool("tool_get_roots_list", "get-roots-list", {})
    # The server asks for roots on its own ~350 ms after `initialized` and again only if it has none cached,
    # so the number of roots/list requests depends on timing: record only that at least one arrived.
    s.steps["roots_requested"] = obs.roots_requests >= 1
    require(obs.roots_requests >= 1, "tool_get_roots_list", "no roots/list request received")
    require("root-a" in text_of(s.steps["tool_get_roots_list"]), "tool_get_roots_list", "server did not see the fixed roots")

    await s.expect_error("tool_unknown", c.call_tool, "no-such-tool", {})

    # resources
    res = await s.record("resources_list", c.list_resources)
    await s.record("resources_templates_list", c.list_resource_templates)
    uris = [r.uri for r in res.resources]
    static = next((u for u in uris if u.endswith("/features.md")), uris[0] if uris else None)
    require(static is not None, "resources_list", "no resources listed")
    await s.record("resources_read_static", c.read_resource, str(static),
                   post=lambda r: {"contents": [{**x, "text": digest(x["text"])} if "text" in x else x for x in r["contents"]]})
    await s.record("resources_read_dynamic_text", c.read_resource, "demo://resource/dynamic/text/1")
    await s.record("resources_read_dynamic_blob", c.read_resource, "demo://resource/dynamic/blob/2",
                   post=lambda r: {"contents": norm_blob_resource(r["contents"])})

    # prompts
    await s.record("prompts_list", c.list_prompts)
    await s.record("prompts_get_simple", c.get_prompt, "simple-prompt")
    await s.record("prompts_get_args", c.get_prompt, "args-prompt", {"city": "Lyon", "state": "Rhone"})
    await s.record("prompts_get_resource", c.get_prompt, "resource-prompt", {"resourceType": "Text", "resourceId": "3"})
    await s.record("completion_complete", c.complete, types.PromptReference(type="ref/prompt", name="completable-prompt"),
                   {"name": "department", "value": "S"})

    # logging: the roots log (deterministic) has arrived by now; switch simulated logging on, wait for its
    # immediate first message, switch it off. Simulated messages have a RANDOM level (and data naming it):
    # both are replaced by "<random>" below.
    if legacy:
        n_before = len(obs.log_messages)
        obs.log_event = anyio.Event()
        await s.call_tool("tool_logging_on", "toggle-simulated-logging", {})
        with anyio.move_on_after(5):
            while len(obs.log_messages) <= n_before:
                await obs.log_event.wait()
                obs.log_event = anyio.Event()
        await s.call_tool("tool_logging_off", "toggle-simulated-logging", {})
        # Sentinel round trip so late notifications are in before the snapshot.
        await s.record("ping_final", c.send_ping)
        logs = []
        for m in obs.log_messages:
            m = dict(m)
            if isinstance(m.get("data"), str) and re.fullmatch(r"\w+[- ]level[- ]message.*", m["data"], re.I):
                m["level"] = "<random>"
                m["data"] = "<random>-level message"
            logs.append(m)
        # Deduplicate the random ones (a 5 s timer could add a second one on a slow machine) and sort.
        uniq = {json.dumps(norm(m), sort_keys=True) for m in logs}
        s.steps["log_notifications"] = [json.loads(x) for x in sorted(uniq)]
        require(any(m["level"] == "<random>" for m in logs), "log_notifications", "no simulated log message arrived")


# ---- mcp-server-time script --------------------------------------------------------------------------
ISO_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})([+-]\d{2}:\d{2})$")
WEEKDAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}


def norm_time_result(tr: dict[str, Any], keep_clock: bool) -> dict[str, Any]:
    """mcp-server-time answers carry today's date (get_current_time: also the current clock time) and the
    weekday. Keep the timezone, the UTC offset and is_dst; replace the date by <date> and the weekday by
    <weekday> (after checking it is one); the clock time is kept only when it is an input (convert_time)."""
    tr = dict(tr)
    m = ISO_RE.match(tr.get("datetime", ""))
    if not m:
        raise ValueError(f"unexpected datetime {tr.get('datetime')!r}")
    tr["datetime"] = f"<date>T{m.group(2) if keep_clock else '<time>'}{m.group(3)}"
    if tr.get("day_of_week") not in WEEKDAYS:
        raise ValueError(f"unexpected weekday {tr.get('day_of_week')!r}")
    tr["day_of_week"] = "<weekday>"
    return tr


def norm_time_call(r: dict[str, Any], fn) -> dict[str, Any]:
    r = dict(r)
    if r.get("isError"):
        return r
    if "structuredContent" in r:
        r["structuredContent"] = fn(r["structuredContent"])
    r["content"] = [
        ({**b, "text": json.dumps(fn(json.loads(b["text"])), sort_keys=True)} if b.get("type") == "text" else b)
        for b in r.get("content", [])
    ]
    return r


async def script_time(s: Script, era: str) -> None:
    c = s.c
    legacy = c.protocol_version != "2026-07-28"
    if legacy:
        await s.record("ping", c.send_ping)
    tools = await s.record("tools_list", c.list_tools)
    names = sorted(t.name for t in tools.tools)
    require(names == ["convert_time", "get_current_time"], "tools_list", f"unexpected tools {names}")
    # Zones without DST so offsets and is_dst never change with the date.
    await s.call_tool("tool_get_current_time", "get_current_time", {"timezone": "Asia/Tokyo"},
                      post=lambda r: norm_time_call(r, lambda x: norm_time_result(x, keep_clock=False)))
    await s.call_tool("tool_convert_time", "convert_time",
                      {"source_timezone": "Asia/Tokyo", "time": "09:30", "target_timezone": "Asia/Kathmandu"},
                      post=lambda r: norm_time_call(r, lambda x: {
                          **x, "source": norm_time_result(x["source"], True), "target": norm_time_result(x["target"], True)}))
    require(s.steps["tool_convert_time"].get("structuredContent", {}).get("time_difference") == "-3.25h",
            "tool_convert_time", f"unexpected result {s.steps['tool_convert_time']}")
    await s.call_tool("tool_convert_time_bad_zone", "convert_time",
                      {"source_timezone": "Mars/Olympus_Mons", "time": "09:30", "target_timezone": "UTC"})
    require(s.steps["tool_convert_time_bad_zone"].get("isError") is True, "tool_convert_time_bad_zone", "expected isError")
    await s.expect_error("tool_unknown", c.call_tool, "no-such-tool", {})
    if legacy:
        await s.record("ping_final", c.send_ping)


# ---- main --------------------------------------------------------------------------------------------
def default_server_cmd(server: str) -> list[str]:
    if server == "time":
        return [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
    return [str(HERE / "node_modules" / ".bin" / "mcp-server-everything"), "stdio"]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    else:
        cmd = []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--server", choices=["everything", "time"], default="everything")
    p.add_argument("--era", choices=sorted(ERAS), default="2025-11-25")
    p.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    p.add_argument("--url", help="server URL for --transport http|sse")
    p.add_argument("--timeout", type=float, default=60.0, help="per-step timeout in seconds (default 60)")
    p.add_argument("--total-timeout", type=float, default=300.0,
                   help="hard limit for the whole run; on expiry the step in progress is named and the process exits 1")
    p.add_argument("--timings", action="store_true", help="also print per-step durations to stderr")
    a = p.parse_args(argv)
    if a.transport == "stdio":
        if a.url:
            p.error("--url is for --transport http|sse")
        cmd = cmd or default_server_cmd(a.server)
    else:
        if not a.url:
            p.error(f"--transport {a.transport} needs --url")
        if cmd:
            p.error("SERVER_CMD is only for --transport stdio")
    return a, cmd


def other_notifications(obs: Observed, transport: str) -> list[str]:
    """Methods only, no counts: list_changed notifications may be coalesced differently per run.
    Over Streamable HTTP, notifications the server sends outside any request (server-everything's
    tools/list_changed right after `initialized`) travel on the standalone GET stream, which the SDK opens
    only after `initialized`: whether they arrive is a race, so list_changed is left out there."""
    methods = obs.notification_methods - {"notifications/message", "notifications/progress"}
    if transport == "http":
        methods = {m for m in methods if not m.endswith("/list_changed")}
    return sorted(methods)


async def drive(client: Client, script: Script, a: argparse.Namespace) -> None:
    pv = client.protocol_version
    if a.era == "2025-11-25":
        require(pv == "2025-11-25", "connect", f"negotiated {pv}, wanted 2025-11-25")
    elif a.era == "2026-07-28":
        require(pv == "2026-07-28", "connect", f"server did not adopt 2026-07-28 (negotiated {pv})")
    sess = client.session
    init = getattr(sess, "initialize_result", None)
    disc = getattr(sess, "discover_result", None)
    connect: dict[str, Any] = {
        "protocol_version": pv,
        "handshake": "initialize" if init is not None else ("server/discover" if disc is not None else "adopted"),
        "server_info": dump(client.server_info) if client.server_info else None,
        "server_capabilities": dump(client.server_capabilities),
        # Instructions can be long: digest only.
        "instructions": digest(client.instructions) if client.instructions else None,
    }
    if disc is not None:
        connect["discover"] = {"supported_versions": sorted(disc.supported_versions)}
    script.steps["connect"] = connect
    if a.server == "everything":
        await script_everything(script, a.era)
    else:
        await script_time(script, a.era)


async def run(a: argparse.Namespace, cmd: list[str]) -> dict[str, Any]:
    global CURRENT_STEP
    CURRENT_STEP = "connect"
    obs = Observed()
    if a.transport == "stdio":
        # Full environment: the SDK's default passes only a small allow-list (HOME, PATH, ...), which would
        # hide e.g. RUST_LOG or npm settings from `mcptape record` / npx.
        server: Any = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    elif a.transport == "http":
        server = a.url
    else:
        server = sse_client(a.url)
    client = Client(
        server,
        mode=ERAS[a.era],
        cache=None,  # every call must reach the server (a recording must contain it)
        read_timeout_seconds=a.timeout,
        client_info=types.Implementation(name="mcptape-peers-client", version="1.0.0"),
        sampling_callback=obs.sampling,
        elicitation_callback=obs.elicitation,
        list_roots_callback=obs.list_roots,
        logging_callback=obs.logging,
        message_handler=obs.message,
        log_level="debug" if a.era != "2025-11-25" else None,  # 2026-07-28: per-request log opt-in
    )
    t0 = time.monotonic()
    connected = False
    try:
        # No anyio.fail_after around the connect: the SDK opens task groups inside __aenter__ that must
        # not be nested in a cancel scope we leave before them. read_timeout_seconds bounds the handshake.
        async with client:
            connected = True
            script = Script(client, obs, a.timeout)
            script.timings["connect"] = round(time.monotonic() - t0, 3)
            await drive(client, script, a)
    except StepFailed:
        raise
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        if isinstance(inner, StepFailed):
            raise inner from None
        raise StepFailed("connect" if not connected else "disconnect", inner) from e
    if a.timings:
        log("timings: " + json.dumps(script.timings))
    return norm(
        {
            "client": "mcptape-peers-client/1",
            "server": a.server,
            "era": a.era,
            "transport": a.transport,
            "steps": script.steps,
            "other_notifications": other_notifications(obs, a.transport),
            "transport_errors": sorted(set(obs.transport_errors)),
        }
    )


def main(argv: list[str] | None = None) -> int:
    a, cmd = parse_args(sys.argv[1:] if argv is None else argv)
    log(f"server={a.server} era={a.era} transport={a.transport} target={a.url or ' '.join(cmd)}")
    t0 = time.monotonic()

    def watchdog() -> None:
        log(f"FAILED: step {CURRENT_STEP!r} failed: total timeout {a.total_timeout}s exceeded")
        os._exit(1)  # the SDK's stdio client would otherwise wait for the child; tests must never hang

    timer = threading.Timer(a.total_timeout, watchdog)
    timer.daemon = True
    timer.start()
    try:
        doc = anyio.run(run, a, cmd)
    except StepFailed as e:
        log(f"FAILED: {e}")
        return 1
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        # anyio task groups wrap failures; surface a StepFailed from inside if there is one.
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        if isinstance(inner, StepFailed):
            log(f"FAILED: {inner}")
        else:
            log(f"FAILED: step 'teardown/unknown' failed: {e!r}")
        return 1
    sys.stdout.write(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    log(f"ok in {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
