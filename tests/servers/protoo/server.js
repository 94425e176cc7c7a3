// A protoo (mediasoup-style) request/response signalling server: one process, rooms in memory.
//
//   node tests/servers/protoo/server.js --port 0
//
// Prints `ready protoo http://127.0.0.1:PORT` once listening. Clients log in over HTTP, then open
// ws://127.0.0.1:PORT/?roomId=R&peerId=P&token=T with the websocket subprotocol `protoo`.
"use strict";
const http = require("http");
const protoo = require("protoo-server");
const { args, verifyToken, login, sendJson, exitOnSignals } = require("../lib");

exitOnSignals();
const opt = args({ port: "0" });
const rooms = new Map();

const httpServer = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (req.method === "POST" && path === "/api/login") return login(req, res);
  if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { ok: true });
  sendJson(res, 404, { error: "not found" });
});
const wsServer = new protoo.WebSocketServer(httpServer, { maxReceivedFrameSize: 65536 });

wsServer.on("connectionrequest", (info, accept, reject) => {
  const q = new URL(info.request.url, "http://localhost").searchParams;
  const user = verifyToken(q.get("token"));
  const roomId = q.get("roomId");
  const peerId = q.get("peerId");
  if (!user) return reject(401, "unauthorized");
  if (!roomId || !peerId) return reject(400, "roomId and peerId required");
  let room = rooms.get(roomId);
  if (!room) {
    room = new protoo.Room();
    rooms.set(roomId, room);
    room.on("close", () => rooms.delete(roomId));
  }
  if (room.hasPeer(peerId)) return reject(409, "peerId already in the room");
  const peer = room.createPeer(peerId, accept());
  peer.data.user = user;
  peer.data.joined = false;
  peer.on("request", (request, ok, fail) => handle(room, roomId, peer, request, ok, fail));
  peer.on("close", () => {
    for (const other of room.peers) if (other !== peer && other.data.joined) other.notify("peerClosed", { peerId }).catch(() => {});
    if (room.peers.length === 0) room.close();
  });
});

function others(room, peer) {
  return room.peers.filter((p) => p !== peer && p.data.joined);
}

// Requests: join {displayName}, signal {to?, data}, echo (anything), leave.
function handle(room, roomId, peer, request, ok, fail) {
  const data = request.data || {};
  switch (request.method) {
    case "echo":
      return ok(data);
    case "join":
      if (roomId === "forbidden") return fail(403, "room forbidden");
      if (peer.data.joined) return fail(409, "already joined");
      peer.data.joined = true;
      peer.data.displayName = data.displayName || peer.data.user;
      for (const other of others(room, peer)) other.notify("newPeer", { id: peer.id, displayName: peer.data.displayName }).catch(() => {});
      return ok({ peers: others(room, peer).map((p) => ({ id: p.id, displayName: p.data.displayName })) });
    case "signal": {
      if (!peer.data.joined) return fail(403, "not joined");
      const targets = data.to ? others(room, peer).filter((p) => p.id === data.to) : others(room, peer);
      if (data.to && targets.length === 0) return fail(404, "no such peer");
      for (const p of targets) p.notify("signal", { from: peer.id, data: data.data }).catch(() => {});
      return ok({ delivered: targets.length });
    }
    case "leave":
      ok({});
      return peer.close();
    default:
      return fail(404, `unknown method ${request.method}`);
  }
}

httpServer.listen(Number(opt.port), "127.0.0.1", () => {
  console.log(`ready protoo http://127.0.0.1:${httpServer.address().port}`);
});
