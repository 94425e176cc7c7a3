"""aiortc (a WebRTC stack in Python, independent of str0m) as the far end of joincanary's
`webrtc` step: it answers our offer, or offers and takes our answer, and echoes every data
channel message back on the channel it came on. Loopback only: its ICE agent gathers one host
candidate, on 127.0.0.1, and no STUN or TURN server is asked.

    python server.py [--port 0] [--lifetime 600]
    # ready aiortc http://127.0.0.1:PORT

HTTP (JSON bodies, at most 64 KiB):
  POST /offer   {"sdp", "type": "offer"}  -> {"id", "sdp", "type": "answer"}   (we offer);
                with "exit_when": "connected" the whole server exits (os._exit) the moment this
                peer's DTLS is up: a server that dies mid-flow, at a known point
  POST /call    {"media": N}              -> {"id", "sdp", "type": "offer"}: aiortc offers a data
                channel after N audio/video m-lines (recvonly), as an SFU's subscriber offer
  POST /answer/ID {"sdp", "type": "answer"} -> {}                         (we answered)
  GET  /healthz                           -> {"ok": true, "peers": N}

Every loop is bounded: at most 16 peer connections at once, each closed after 60 s; at most
10000 messages echoed per channel; the server exits after --lifetime seconds, or at once when
its parent is gone (a test killed before it could stop it).
"""

import argparse
import asyncio
import itertools
import json
import os
import sys

import aioice.ice
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

MAX_PEERS = 16
PEER_LIFETIME = 60.0
MAX_ECHOES = 10000
MAX_BODY = 64 * 1024
MAX_MEDIA = 16

# aioice gathers on every interface but 127.0.0.1; the tests' rule is the opposite.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

peers: dict[int, RTCPeerConnection] = {}
ids = itertools.count(1)


def echo_on(channel):
    """Echoes what arrives on `channel`, as it came (text or bytes), MAX_ECHOES at most."""
    left = MAX_ECHOES

    @channel.on("message")
    def on_message(message):
        nonlocal left
        if left > 0 and channel.readyState == "open":
            left -= 1
            channel.send(message)


async def close(peer_id):
    pc = peers.pop(peer_id, None)
    if pc is not None:
        await pc.close()


def new_peer(exit_when_connected=False):
    if len(peers) >= MAX_PEERS:
        raise web.HTTPServiceUnavailable(text="too many peer connections")
    peer_id = next(ids)
    # No ICE server: aiortc would otherwise ask Google's STUN server.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peers[peer_id] = pc
    pc.on("datachannel", echo_on)

    @pc.on("connectionstatechange")
    async def on_state():
        if exit_when_connected and pc.connectionState == "connected":
            print("exiting: DTLS connected and exit_when asked for it", flush=True)
            os._exit(0)
        if pc.connectionState in ("failed", "closed"):
            await close(peer_id)

    asyncio.get_running_loop().call_later(
        PEER_LIFETIME, lambda: asyncio.ensure_future(close(peer_id))
    )
    return peer_id, pc


async def body(request):
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    text = await request.content.read(MAX_BODY + 1)
    if len(text) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(text))
    try:
        value = json.loads(text or b"{}")
    except ValueError as e:
        raise web.HTTPBadRequest(text=f"not JSON: {e}")
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="not a JSON object")
    return value


def description(value, kind):
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or value.get("type", kind) != kind:
        raise web.HTTPBadRequest(text=f'expected {{"sdp": "...", "type": "{kind}"}}')
    return RTCSessionDescription(sdp=sdp, type=kind)


async def on_offer(request):
    value = await body(request)
    offer = description(value, "offer")
    peer_id, pc = new_peer(exit_when_connected=value.get("exit_when") == "connected")
    try:
        await pc.setRemoteDescription(offer)
        # Resolves once gathering is complete: the answer carries aiortc's candidate.
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # aiortc refusing the offer: the test reads its words
        await close(peer_id)
        raise web.HTTPBadRequest(text=f"offer refused: {e}")
    return web.json_response({"id": peer_id, "sdp": pc.localDescription.sdp, "type": "answer"})


async def on_call(request):
    media = (await body(request)).get("media", 0)
    if not isinstance(media, int) or not 0 <= media <= MAX_MEDIA:
        raise web.HTTPBadRequest(text=f"media: 0 to {MAX_MEDIA} m-lines")
    peer_id, pc = new_peer()
    for i in range(media):
        pc.addTransceiver("audio" if i == 0 else "video", direction="recvonly")
    echo_on(pc.createDataChannel("aiortc"))
    await pc.setLocalDescription(await pc.createOffer())
    return web.json_response({"id": peer_id, "sdp": pc.localDescription.sdp, "type": "offer"})


async def on_answer(request):
    try:
        pc = peers[int(request.match_info["id"])]
    except (KeyError, ValueError):
        raise web.HTTPNotFound(text="no such call")
    try:
        await pc.setRemoteDescription(description(await body(request), "answer"))
    except web.HTTPException:
        raise
    except Exception as e:
        raise web.HTTPBadRequest(text=f"answer refused: {e}")
    return web.json_response({})


async def on_health(_request):
    return web.json_response({"ok": True, "peers": len(peers)})


async def watch_parent(parent, lifetime):
    """Exits when the parent is gone or the lifetime is over (at most lifetime / 0.5 looks)."""
    for _ in range(int(lifetime / 0.5)):
        if os.getppid() != parent:
            break
        await asyncio.sleep(0.5)
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=600.0)
    args = parser.parse_args()
    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes(
        [
            web.post("/offer", on_offer),
            web.post("/call", on_call),
            web.post("/answer/{id}", on_answer),
            web.get("/healthz", on_health),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"ready aiortc http://127.0.0.1:{port}", flush=True)
    await watch_parent(os.getppid(), args.lifetime)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
