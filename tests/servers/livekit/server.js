// LiveKit's signalling endpoint as far as a joining client's token goes: `/rtc` upgrades to a
// websocket only when `access_token` passes livekit-server-sdk's own TokenVerifier (the
// server's key and secret; signature, `iss`, `exp`, `nbf`) and grants `video.roomJoin` for the
// room. Then, as LiveKit does, the first message is a binary SignalResponse carrying `join`, and
// a SignalRequest `ping_req` is answered with `pong_resp` (field numbers from livekit/protocol's
// livekit_rtc.proto). Not a LiveKit server: no rooms, no media.
//
//   node tests/servers/livekit/server.js --port 0 --api-key K --api-secret S --room R
//
// Prints `ready livekit http://127.0.0.1:PORT`. A refused token is answered 401 with the
// verifier's words, the token and its signature alone (a server echoing what it was sent:
// the prober must scrub both).
// `GET /seen` lists every token it was sent, for a test to look for them in what the prober
// showed.
"use strict";
const http = require("http");
const crypto = require("crypto");
const { TokenVerifier } = require("livekit-server-sdk");
const { args, sendJson, exitOnSignals } = require("../lib");

exitOnSignals();
const opt = args({ port: "0", "api-key": "devkey", "api-secret": "secret", room: "canary-local" });
const verifier = new TokenVerifier(opt["api-key"], opt["api-secret"]);
// Bounded: a test sends tens.
const seen = [];

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
// A length-delimited field (wire type 2).
function field(no, bytes) {
  return Buffer.concat([varint((no << 3) | 2), varint(bytes.length), bytes]);
}
// A varint field (wire type 0).
function number(no, n) {
  return Buffer.concat([varint(no << 3), varint(n)]);
}
function readVarint(buf, at) {
  let v = 0n;
  let shift = 0n;
  while (at < buf.length) {
    const b = buf[at++];
    v |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [v, at];
    shift += 7n;
  }
  return [null, at];
}

// SignalResponse{join(1): JoinResponse{room(1): Room{sid(1), name(2)},
// participant(2): ParticipantInfo{sid(1), identity(2)}}}
function joinResponse(room, identity) {
  const r = Buffer.concat([field(1, Buffer.from("RM_canary")), field(2, Buffer.from(room))]);
  const p = Buffer.concat([field(1, Buffer.from("PA_canary")), field(2, Buffer.from(identity))]);
  return field(1, Buffer.concat([field(1, r), field(2, p)]));
}
// SignalRequest{ping_req(16): Ping{timestamp(1)}} -> SignalResponse{pong_resp(20): Pong{
// last_ping_timestamp(1), timestamp(2)}}; anything else: null.
function answer(payload) {
  const [tag, at] = readVarint(payload, 0);
  if (tag !== BigInt((16 << 3) | 2)) return null;
  const [len, start] = readVarint(payload, at);
  if (len === null) return null;
  const ping = payload.subarray(start, start + Number(len));
  let ts = 0n;
  if (ping[0] === 0x08) ts = readVarint(ping, 1)[0] ?? 0n;
  return field(20, Buffer.concat([number(1, ts), number(2, BigInt(Date.now()))]));
}

// A server frame (never masked), payloads under 64 KiB.
function frame(opcode, payload) {
  const head =
    payload.length < 126
      ? Buffer.from([0x80 | opcode, payload.length])
      : Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}

function refuse(socket, status, body) {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}

// The client's frames (masked), read as they come; at most 64 KiB buffered.
function serve(socket) {
  let buf = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    if (buf.length > 65536) return socket.destroy();
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        return socket.destroy();
      }
      const masked = (buf[1] & 0x80) !== 0;
      const mask = masked ? buf.subarray(at, at + 4) : null;
      if (masked) at += 4;
      if (buf.length < at + len) return;
      const payload = Buffer.from(buf.subarray(at, at + len));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buf = buf.subarray(at + len);
      if (opcode === 0x8) return socket.end(frame(0x8, Buffer.alloc(0)));
      if (opcode === 0x9) socket.write(frame(0xa, payload));
      if (opcode === 0x2) {
        const reply = answer(payload);
        if (reply) socket.write(frame(0x2, reply));
      }
    }
  });
  socket.on("error", () => socket.destroy());
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/seen") return sendJson(res, 200, seen);
  sendJson(res, 404, { error: "not found" });
});

server.on("upgrade", async (req, socket) => {
  socket.on("error", () => socket.destroy());
  const url = new URL(req.url, "http://localhost");
  if (url.pathname !== "/rtc") return refuse(socket, 404, { error: "not found" });
  const token = url.searchParams.get("access_token") || "";
  if (seen.length < 1000) seen.push(token);
  let grants;
  try {
    grants = await verifier.verify(token);
  } catch (e) {
    const signature = token.split(".").pop();
    return refuse(socket, 401, { error: `invalid token: ${e.message}`, token, signature });
  }
  const video = grants.video || {};
  if (!video.roomJoin || video.room !== opt.room) {
    return refuse(socket, 401, { error: `no permission to join room ${opt.room}` });
  }
  const key = req.headers["sec-websocket-key"] || "";
  const accept = crypto
    .createHash("sha1")
    .update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
    .digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  socket.write(frame(0x2, joinResponse(video.room, grants.sub || "")));
  serve(socket);
});

server.listen(Number(opt.port), "127.0.0.1", () => {
  console.log(`ready livekit http://127.0.0.1:${server.address().port}`);
});
