// A tiny conference app on SockJS (sockjs-node 0.3, the reference SockJS server, as under Meteor
// and Spring) with rooms over Redis pub/sub: one process of a cluster. Start two with the same
// --redis and a participant on each: `signal` crosses between them only through Redis.
//
//   node tests/servers/sockjs/server.js --port 0 --redis redis://127.0.0.1:6379 [--name a]
//
// SockJS endpoint /room (websocket: /room/SERVER/SESSION/websocket). Messages are JSON text:
//   {"type":"auth","token":T}          -> {"type":"authed","user":U}, or an error and the close
//                                         c[4001,"unauthorized"] (T from POST /api/login)
//   {"type":"join","room":R}           -> {"type":"joined","room":R} once subscribed in Redis
//   {"type":"signal","room":R,"data":D} -> every other member of R, on any process:
//                                         {"type":"signal","room":R,"from":U,"data":D}
// A Redis error is {"type":"error","error":<Redis's words>}. Prints
// `ready sockjs http://127.0.0.1:PORT name=NAME` once Redis is connected and the port listens.
"use strict";
const http = require("http");
const sockjs = require("sockjs");
const { createClient } = require("redis");
const { args, verifyToken, login, sendJson, exitOnSignals } = require("../lib");

exitOnSignals();
const opt = args({ port: "0", redis: "redis://127.0.0.1:6379", name: "a" });
const MAX_ROOMS = 1000;

function redisClient(url) {
  const c = createClient({ url, socket: { reconnectStrategy: (n) => Math.min(100 * (n + 1), 1000) } });
  // A lost connection is reported on stderr and retried; it must not crash the server.
  c.on("error", (e) => console.error(`redis ${url}: ${e.message}`));
  return c;
}

async function main() {
  const pub = redisClient(opt.redis);
  const sub = pub.duplicate();
  sub.on("error", (e) => console.error(`redis sub: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  // room -> Set of local connections
  const rooms = new Map();

  const deliver = (room, raw) => {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    for (const conn of rooms.get(room) || []) {
      if (conn.id !== msg.conn) conn.write(JSON.stringify({ type: "signal", room, from: msg.from, data: msg.data }));
    }
  };

  const service = sockjs.createServer({ log: () => {}, heartbeat_delay: 25000, disconnect_delay: 5000 });
  service.on("connection", (conn) => {
    if (!conn) return;
    let user = null;
    const joined = new Set();
    const send = (value) => conn.write(JSON.stringify(value));
    conn.on("data", async (text) => {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch {
        return send({ type: "error", error: "not JSON" });
      }
      if (msg.type === "auth") {
        user = verifyToken(msg.token);
        if (!user) {
          send({ type: "error", error: "unauthorized" });
          return conn.close(4001, "unauthorized");
        }
        return send({ type: "authed", user });
      }
      if (!user) return send({ type: "error", error: "auth first" });
      const room = typeof msg.room === "string" ? msg.room : "";
      if (!room) return send({ type: "error", error: "room required" });
      try {
        if (msg.type === "join") {
          if (!rooms.has(room)) {
            if (rooms.size >= MAX_ROOMS) return send({ type: "error", error: "too many rooms" });
            rooms.set(room, new Set());
            await sub.subscribe(`room:${room}`, (raw) => deliver(room, raw));
          }
          rooms.get(room).add(conn);
          joined.add(room);
          return send({ type: "joined", room, user });
        }
        if (msg.type === "signal") {
          if (!joined.has(room)) return send({ type: "error", error: "not in room" });
          await pub.publish(`room:${room}`, JSON.stringify({ conn: conn.id, from: user, data: msg.data }));
          return;
        }
        send({ type: "error", error: `unknown type ${JSON.stringify(msg.type)}` });
      } catch (e) {
        send({ type: "error", error: (e && e.message) || String(e) });
      }
    });
    conn.on("close", () => {
      for (const room of joined) {
        const members = rooms.get(room);
        if (members) members.delete(conn);
      }
    });
  });

  const server = http.createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (req.method === "POST" && path === "/api/login") return login(req, res);
    if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { ok: true, server: opt.name });
    if (!path.startsWith("/room")) sendJson(res, 404, { error: "not found" });
  });
  service.installHandlers(server, { prefix: "/room" });
  server.listen(Number(opt.port), "127.0.0.1", () => {
    console.log(`ready sockjs http://127.0.0.1:${server.address().port} name=${opt.name}`);
  });
}

main().catch((e) => {
  console.error(`sockjs: ${(e && e.message) || e}`);
  process.exit(1);
});
