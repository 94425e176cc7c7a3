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
  GET  /ws      a websocket for trickle ICE (the way LiveKit and Janus send candidates): the
                SDP goes out without its candidates, then each candidate in a message of its
                own, then the end of candidates, in the style asked for (below); once this
                peer's DTLS is up, {"type": "connected"} (a later step waits for it, as for
                Janus's webrtcup). Messages in, JSON:
                {"type": "offer", "sdp", "trickle": STYLE, "delay_ms": 0}: aiortc answers;
                {"type": "call", "media": N, "trickle": STYLE, "delay_ms": 0}: aiortc offers;
                {"type": "answer", "sdp"}: our answer to that offer ({"type": "answered"}
                back).
                STYLE "janus": {"janus": "trickle", "sender": ID, "candidate": {"candidate",
                "sdpMid", "sdpMLineIndex"}}, ending {"janus": "trickle", "candidate":
                {"completed": true}}; "livekit": {"trickle": {"candidateInit": "<that object as
                a JSON string>", "target": "SUBSCRIBER"}}, ending with "final": true and an empty
                candidate. A {"type": "keepalive"} goes before each candidate (frames that are
                not candidates, in between). delay_ms (at most 5000) holds the candidates back;
                "candidates_first": true sends them (and their end) before the SDP instead.

Every loop is bounded: at most 16 peer connections at once, each closed after 60 s; at most
10000 messages echoed per channel; the server exits after --lifetime seconds, or at once when
its parent is gone (a test killed before it could stop it).
"""

import argparse
import asyncio
import itertools
import json
import os
import re
import sys

import aioice.ice
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

MAX_PEERS = 16
PEER_LIFETIME = 60.0
MAX_ECHOES = 10000
MAX_BODY = 64 * 1024
MAX_MEDIA = 16
MAX_WS_MESSAGES = 100
MAX_DELAY_MS = 5000

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


def without_candidates(sdp):
    """The SDP as a trickling browser sends it: no candidate lines, no end-of-candidates, and
    no address in the m- and c-lines either (port 9, 0.0.0.0): nothing to reach but what is
    trickled."""
    lines = sdp.split("\r\n")
    kept = [
        re.sub(r"^(m=\S+) \d+ ", r"\1 9 ", re.sub(r"^c=IN IP4 \S+$", "c=IN IP4 0.0.0.0", l))
        for l in lines
        if not l.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    candidates = [l[2:] for l in lines if l.startswith("a=candidate:")]
    return "\r\n".join(kept), candidates


def trickle_messages(style, peer_id, candidates):
    """The candidates as `style` trickles them, then its end of candidates."""
    out = []
    for candidate in candidates:
        init = {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}
        out.append({"type": "keepalive"})
        if style == "livekit":
            out.append({"trickle": {"candidateInit": json.dumps(init), "target": "SUBSCRIBER"}})
        else:
            out.append({"janus": "trickle", "sender": peer_id, "candidate": init})
    if style == "livekit":
        end = json.dumps({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0})
        out.append({"trickle": {"candidateInit": end, "target": "SUBSCRIBER", "final": True}})
    else:
        out.append({"janus": "trickle", "sender": peer_id, "candidate": {"completed": True}})
    return out


async def on_ws(request):
    """Trickle ICE over a websocket (see the module's doc); MAX_WS_MESSAGES messages in at most."""
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY)
    await ws.prepare(request)
    pcs = []

    async def send_trickled(value, peer_id, pc, kind):
        style = value.get("trickle", "janus")
        delay = value.get("delay_ms", 0)
        if style not in ("janus", "livekit") or not isinstance(delay, int):
            raise ValueError(f"trickle: janus or livekit, delay_ms: a number")
        sdp, candidates = without_candidates(pc.localDescription.sdp)
        trickled = trickle_messages(style, peer_id, candidates)
        if value.get("candidates_first") is True:
            # Janus's subscriber offer can race its own gathering: candidates before the SDP.
            for message in trickled:
                await ws.send_json(message)
            await ws.send_json({"id": peer_id, "sdp": sdp, "type": kind})
            return
        await ws.send_json({"id": peer_id, "sdp": sdp, "type": kind})
        await asyncio.sleep(min(max(delay, 0), MAX_DELAY_MS) / 1000)
        for message in trickled:
            await ws.send_json(message)

    def on_connected(pc):
        @pc.on("connectionstatechange")
        async def tell():
            if pc.connectionState == "connected" and not ws.closed:
                await ws.send_json({"type": "connected"})

    for _ in range(MAX_WS_MESSAGES):
        message = await ws.receive()
        if message.type != WSMsgType.TEXT:
            break
        try:
            value = json.loads(message.data)
            if value.get("type") == "offer":
                peer_id, pc = new_peer()
                pcs.append(pc)
                on_connected(pc)
                await pc.setRemoteDescription(description(value, "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await send_trickled(value, peer_id, pc, "answer")
            elif value.get("type") == "call":
                media = value.get("media", 0)
                if not isinstance(media, int) or not 0 <= media <= MAX_MEDIA:
                    raise ValueError(f"media: 0 to {MAX_MEDIA} m-lines")
                peer_id, pc = new_peer()
                pcs.append(pc)
                on_connected(pc)
                for i in range(media):
                    pc.addTransceiver("audio" if i == 0 else "video", direction="recvonly")
                echo_on(pc.createDataChannel("aiortc"))
                await pc.setLocalDescription(await pc.createOffer())
                await send_trickled(value, peer_id, pc, "offer")
            elif value.get("type") == "answer" and pcs:
                await pcs[-1].setRemoteDescription(description(value, "answer"))
                await ws.send_json({"type": "answered"})
            else:
                raise ValueError("expected an offer, a call, or an answer after a call")
        except Exception as e:  # the test reads aiortc's words
            await ws.send_json({"type": "error", "error": str(e)})
    await ws.close()
    return ws


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
            web.get("/ws", on_ws),
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
