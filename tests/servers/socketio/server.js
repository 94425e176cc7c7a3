// A tiny conference app on Socket.IO 4.8 with the Redis adapter: one process of a cluster.
// Start two with the same --redis and a participant on each: `signal` crosses between them
// only through Redis pub/sub, as on a real platform.
//
//   node tests/servers/socketio/server.js --port 0 --redis redis://127.0.0.1:6379 [--name a]
//        [--pubsub-redis URL] [--ping-interval MS] [--ping-timeout MS] [--allow-eio3 true]
//
// --allow-eio3 also serves Engine.IO v3 (Socket.IO 2) clients, whose token comes in the query.
//
// Prints `ready socketio http://127.0.0.1:PORT` once Redis is connected and the port listens.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const { args, verifyToken, login, sendJson, exitOnSignals } = require("../lib");

exitOnSignals();
const opt = args({ port: "0", redis: "redis://127.0.0.1:6379", name: "a", "ping-interval": "25000", "ping-timeout": "20000", "allow-eio3": "false" });

function redisClient(url) {
  const c = createClient({ url, socket: { reconnectStrategy: (n) => Math.min(100 * (n + 1), 1000) } });
  // A lost connection is reported on stderr and retried; it must not crash the server.
  c.on("error", (e) => console.error(`redis ${url}: ${e.message}`));
  return c;
}

async function main() {
  // Presence goes to --redis; the adapter's pub/sub to --pubsub-redis (default: the same one),
  // so a test can stall pub/sub alone.
  const presence = redisClient(opt.redis);
  const pub = redisClient(opt["pubsub-redis"] || opt.redis);
  const sub = pub.duplicate();
  sub.on("error", (e) => console.error(`redis sub: ${e.message}`));
  await Promise.all([presence.connect(), pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (req.method === "POST" && path === "/api/login") return login(req, res);
    if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { ok: true, server: opt.name });
    // socket.io handles /socket.io/ itself before this listener; anything else is unknown.
    if (!path.startsWith("/socket.io/")) sendJson(res, 404, { error: "not found" });
  });
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    pingInterval: Number(opt["ping-interval"]),
    pingTimeout: Number(opt["ping-timeout"]),
    transports: ["websocket", "polling"],
    allowEIO3: opt["allow-eio3"] === "true",
    serveClient: false,
  });

  // The same app on the main namespace and on /conference (probes may test namespace framing).
  for (const nsp of [io.of("/"), io.of("/conference")]) app(nsp, presence);

  httpServer.listen(Number(opt.port), "127.0.0.1", () => {
    console.log(`ready socketio http://127.0.0.1:${httpServer.address().port} name=${opt.name}`);
  });
}

function errorText(e) {
  return (e && e.message) || String(e);
}

function app(nsp, presence) {
  const key = (room) => `presence:${nsp.name}:${room}`;
  // auth: {token} from POST /api/login; a missing or bad token is CONNECT_ERROR "unauthorized".
  nsp.use((socket, next) => {
    // Socket.IO 2 clients (EIO=3) have no auth payload: their token comes in the query.
    const user = verifyToken((socket.handshake.auth && socket.handshake.auth.token) || socket.handshake.query.token);
    if (!user) return next(new Error("unauthorized"));
    socket.data.user = user;
    next();
  });

  nsp.on("connection", (socket) => {
    const user = socket.data.user;
    const rooms = new Set();
    const reply = (ack, event, value) => {
      if (typeof ack === "function") ack(value);
      else socket.emit(event, value);
    };

    // join {room} (or "room"): presence is written to Redis first, so a Redis that refuses
    // writes answers `join_error` {error: <Redis's error text>} and a paused Redis no answer.
    socket.on("join", async (payload, ack) => {
      if (typeof payload === "function") [payload, ack] = [undefined, payload];
      const room = typeof payload === "string" ? payload : payload && payload.room;
      if (typeof room !== "string" || !room) return reply(ack, "join_error", { error: "room required" });
      try {
        await presence.hSet(key(room), socket.id, user);
        const participants = await presence.hLen(key(room));
        socket.join(room);
        rooms.add(room);
        const joined = { room, user, id: socket.id, participants };
        reply(ack, "joined", joined);
        socket.to(room).emit("participant_joined", { room, user, id: socket.id });
      } catch (e) {
        console.error(`join ${room}: ${errorText(e)}`);
        const err = { error: errorText(e) };
        if (typeof ack === "function") ack(err);
        socket.emit("join_error", err);
      }
    });

    // signal {room, data}: to every other participant of the room, through the adapter (so
    // through Redis pub/sub to the other process); the ack (if asked) is node-local.
    socket.on("signal", (payload, ack) => {
      const room = payload && payload.room;
      if (!rooms.has(room)) {
        const err = { error: "not in room" };
        return typeof ack === "function" ? ack(err) : socket.emit("signal_error", err);
      }
      socket.to(room).emit("signal", { room, from: user, id: socket.id, data: payload.data });
      if (typeof ack === "function") ack({ ok: true });
    });

    // echo: answered by this process alone (what a one-participant probe sees).
    socket.on("echo", (payload, ack) => reply(ack, "echo", payload));

    socket.on("leave", async (payload, ack) => {
      const room = payload && payload.room;
      rooms.delete(room);
      socket.leave(room);
      try {
        await presence.hDel(key(room), socket.id);
      } catch (e) {
        console.error(`leave ${room}: ${errorText(e)}`);
      }
      reply(ack, "left", { room });
    });

    socket.on("disconnect", () => {
      for (const room of rooms) presence.hDel(key(room), socket.id).catch(() => {});
    });
  });
}

main().catch((e) => {
  console.error(`socketio: ${errorText(e)}`);
  process.exit(1);
});
