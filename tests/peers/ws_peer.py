#!/usr/bin/env python3
"""An MCP server and client over WebSocket, built on the official Python SDK's 1.x line (`mcp[ws]`, pinned in
tests/python/requirements-ws.txt and installed into .venv-ws by scripts/test): `mcp` 2.x removed the WebSocket
transport, so mcptape's tests use this to exercise `mcptape record --listen ... --upstream ws://...`.

Usage:
    .venv-ws/bin/python ws_peer.py server            # prints "PORT <n>" on stdout, serves ws://127.0.0.1:<n>/ws
    .venv-ws/bin/python ws_peer.py server --cert C --key K   # the same over TLS: wss://localhost:<n>/ws
    .venv-ws/bin/python ws_peer.py client --url URL  # runs a fixed script, prints ONE JSON document on stdout

The server is a FastMCP with two tools (`add`, `echo`; `echo` also sends a log notification first). The
client initializes, lists tools, calls both, calls an unknown tool and pings; its output is the same for two
runs against the same server (nothing in it is run-dependent), so direct and tapped runs compare byte for byte.
Logs go to stderr; exit 1 names what failed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import warnings

import anyio

warnings.filterwarnings("ignore", category=DeprecationWarning)

from mcp import ClientSession  # noqa: E402
from mcp.client.websocket import websocket_client  # noqa: E402
from mcp.server.fastmcp import Context, FastMCP  # noqa: E402
from mcp.server.websocket import websocket_server  # noqa: E402


def make_server() -> FastMCP:
    mcp = FastMCP("mcptape-ws-peer")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @mcp.tool()
    async def echo(text: str, ctx: Context) -> str:
        """Echoes the text (after a log notification)."""
        await ctx.info(f"echoing {len(text)} chars")
        return f"echo: {text}"

    return mcp


class WsApp:
    """A raw ASGI endpoint (an instance, so Starlette passes scope/receive/send through)."""

    def __init__(self, mcp: FastMCP):
        self.server = mcp._mcp_server

    async def __call__(self, scope, receive, send):  # noqa: ANN001
        async with websocket_server(scope, receive, send) as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())


def serve(cert: str | None, key: str | None) -> int:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    app = Starlette(routes=[WebSocketRoute("/ws", WsApp(make_server()))])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, ws="websockets-sansio", log_level="warning", lifespan="off", ssl_certfile=cert, ssl_keyfile=key
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def dump(model) -> object:  # noqa: ANN001
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def script(url: str) -> dict:
    logs: list[str] = []

    async def on_log(params) -> None:  # noqa: ANN001
        logs.append(str(params.data))

    out: dict = {}
    with anyio.fail_after(60):
        return await _script(url, out, logs, on_log)


async def _script(url: str, out: dict, logs: list[str], on_log) -> dict:  # noqa: ANN001
    async with websocket_client(url) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log) as s:
            init = await s.initialize()
            out["server_info"] = dump(init.serverInfo)
            out["protocol_version"] = init.protocolVersion
            out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
            out["add"] = dump(await s.call_tool("add", {"a": 2, "b": 3}))
            out["echo"] = dump(await s.call_tool("echo", {"text": "hello over websocket"}))
            out["unknown"] = dump(await s.call_tool("no-such-tool", {}))
            await s.send_ping()
            out["logs"] = logs
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--cert")
    srv.add_argument("--key")
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    a = p.parse_args()
    if a.cmd == "server":
        return serve(a.cert, a.key)
    try:
        doc = anyio.run(script, a.url)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"[ws_peer.py] FAILED: {e!r}", file=sys.stderr, flush=True)
        return 1
    sys.stdout.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
