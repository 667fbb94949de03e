"""The official slack_sdk against the stand-in at 127.0.0.1:PORT: a Web API call, and a Socket
Mode session that receives an envelope and acknowledges it. Exits 0 when the SDK accepted every
answer, so the stand-in speaks what Slack's own client expects."""

import asyncio
import json
import sys
import urllib.request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

port = int(sys.argv[1])
base = "http://127.0.0.1:%d/api/" % port

bot = WebClient(token="xoxb-test", base_url=base)
r = bot.chat_postMessage(channel="C0CHECK", text="from slack_sdk")
assert r["ok"] and r["ts"], r.data
try:
    bot.chat_postMessage(channel="CGONE", text="x")
    raise SystemExit("a missing channel was accepted")
except SlackApiError as e:
    assert e.response["error"] == "channel_not_found", e.response.data
try:
    WebClient(token="xoxb-wrong", base_url=base).chat_postMessage(channel="C0CHECK", text="x")
    raise SystemExit("a wrong token was accepted")
except SlackApiError as e:
    assert e.response["error"] == "invalid_auth", e.response.data


async def socket_mode():
    got = asyncio.Event()
    client = SocketModeClient(app_token="xapp-test", web_client=AsyncWebClient(token="xoxb-test", base_url=base))

    async def listener(c, req: SocketModeRequest):
        if req.type == "slash_commands":
            assert req.payload["command"] == "/owl", req.payload
            await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            got.set()

    client.socket_mode_request_listeners.append(listener)
    await client.connect()
    for _ in range(100):
        st = json.load(urllib.request.urlopen("http://127.0.0.1:%d/control/state" % port))
        if st["live"] >= 1:
            break
        await asyncio.sleep(0.05)
    env = {"envelope_id": "sdk-check-1", "type": "slash_commands", "accepts_response_payload": True,
           "payload": {"command": "/owl", "text": "ls", "user_id": "U0CHECK", "channel_id": "C0CHECK",
                       "response_url": "http://127.0.0.1:%d/response/sdk" % port}}
    req = urllib.request.Request("http://127.0.0.1:%d/control/envelope" % port, data=json.dumps(env).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req)
    await asyncio.wait_for(got.wait(), 10)
    for _ in range(100):
        st = json.load(urllib.request.urlopen("http://127.0.0.1:%d/control/state" % port))
        if any(a["envelope_id"] == "sdk-check-1" for a in st["acks"]):
            break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("the SDK's ack did not arrive")
    await client.close()


asyncio.run(socket_mode())
print("slack_sdk accepted the stand-in")
