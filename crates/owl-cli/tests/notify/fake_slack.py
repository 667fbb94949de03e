"""A stand-in for Slack on loopback: the Web API methods owl uses (apps.connections.open,
chat.postMessage), a Socket Mode WebSocket that sends `hello` and then whatever envelopes the
test hands it, and `response_url` endpoints. It answers with Slack's own shapes and error codes
(`{"ok": false, "error": "invalid_auth"}`), and the official slack_sdk talks to it in
slack_sdk_check.py, so its wire format is known to be the one real clients expect.

Tokens: xapp-test (app-level), xoxb-test (bot). The test drives it through /control/*.
The port is printed on the first line of stdout.
"""

import asyncio
import json
import socket
import sys
import time

from aiohttp import web, WSMsgType

state = {"calls": [], "acks": [], "responses": [], "sent": [], "connections": 0, "opens": 0}
sockets = set()
counter = {"ts": 0}


def auth(request, want):
    return request.headers.get("Authorization", "") == "Bearer " + want


async def body_of(request):
    if request.content_type == "application/json":
        return await request.json()
    return dict(await request.post())


async def connections_open(request):
    state["opens"] += 1
    if not auth(request, "xapp-test"):
        return web.json_response({"ok": False, "error": "invalid_auth"})
    port = request.app["port"]
    return web.json_response({"ok": True, "url": "ws://127.0.0.1:%d/link/?ticket=t%d&app_id=A0FAKE" % (port, state["opens"])})


async def post_message(request):
    body = await body_of(request)
    state["calls"].append({"method": "chat.postMessage", "auth": request.headers.get("Authorization", ""), "body": body})
    if not auth(request, "xoxb-test"):
        return web.json_response({"ok": False, "error": "invalid_auth"})
    channel = body.get("channel", "")
    if channel == "CGONE":
        return web.json_response({"ok": False, "error": "channel_not_found"})
    if not body.get("text") and not body.get("blocks"):
        return web.json_response({"ok": False, "error": "no_text"})
    counter["ts"] += 1
    ts = "1700000000.%06d" % counter["ts"]
    msg = {"type": "message", "text": body.get("text", ""), "ts": ts, "bot_id": "B0FAKE"}
    if body.get("thread_ts"):
        msg["thread_ts"] = body["thread_ts"]
    return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": msg})


async def response_url(request):
    state["responses"].append({"id": request.match_info["id"], "body": await request.json()})
    return web.Response(text="ok")


async def link(request):
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    state["connections"] += 1
    sockets.add(ws)
    await ws.send_json({"type": "hello", "num_connections": len(sockets),
                        "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                        "connection_info": {"app_id": "A0FAKE"}})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                state["acks"].append({"envelope_id": data.get("envelope_id"), "payload": data.get("payload"), "at": time.time()})
    finally:
        sockets.discard(ws)
    return ws


async def control_envelope(request):
    env = await request.json()
    state["sent"].append({"envelope_id": env.get("envelope_id"), "at": time.time()})
    for ws in list(sockets):
        await ws.send_json(env)
    return web.json_response({"sent": len(sockets)})


async def control_disconnect(request):
    for ws in list(sockets):
        await ws.send_json({"type": "disconnect", "reason": "refresh_requested",
                            "debug_info": {"host": "applink-fake"}})
        await ws.close()
    return web.json_response({"ok": True})


async def control_state(request):
    return web.json_response(dict(state, live=len(sockets)))


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = web.Application()
    app["port"] = port
    app.router.add_post("/api/apps.connections.open", connections_open)
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_post("/response/{id}", response_url)
    app.router.add_get("/link/", link)
    app.router.add_post("/control/envelope", control_envelope)
    app.router.add_post("/control/disconnect", control_disconnect)
    app.router.add_get("/control/state", control_state)
    print(port, flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
