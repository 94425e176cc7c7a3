// A loopback stand-in for the Nextcloud side of Nextcloud Talk, enough for the real standalone
// signalling server (nextcloud-spreed-signaling) and a canary to run the real join:
//
//   node tests/servers/nextcloud/backend.js --port 0 --secret S [--signaling-url ws://...]
//
// Prints `ready nextcloud http://127.0.0.1:PORT` once listening. What it answers, as Talk does
// (lib/Controller/SignalingController.php, RoomController.php; OCS envelopes, JSON):
//   GET  /ocs/v2.php/cloud/capabilities                          the spreed app's features
//   GET  /ocs/v2.php/apps/spreed/api/v3/signaling/settings       (Basic auth) server, ticket, userId,
//        helloAuthParams (1.0: userid + ticket; 2.0: a JWT signed with the key in capabilities)
//   POST /ocs/v2.php/apps/spreed/api/v4/room/TOKEN/participants/active   (Basic auth) a sessionId
//   POST /ocs/v2.php/apps/spreed/api/v3/signaling/backend        the signalling server's requests:
//        the body's HMAC-SHA256 under the shared secret (Spreed-Signaling-Random/-Checksum) is
//        verified first (`invalid_request` otherwise), then `auth` checks the ticket
//        (`invalid_ticket`), `room` the session joined over HTTP (`no_such_room`), `ping` passes.
// Users: any name, password `canary-pass` (an app password). Rooms: any token; tokens starting
// with `forbidden` do not exist (404). The user's requests get a PHP session cookie, and a join
// ends the Talk session an earlier join with the same cookie made in that room (as Nextcloud
// does: one browser, one session per conversation), so two participants need two cookie jars.
//   POST /test/secret {"secret": "..."}  replaces the shared secret: the admin rotated it in
//        Nextcloud but not in the signalling server's config (every backend request then fails).
"use strict";
const http = require("http");
const crypto = require("crypto");
const { args, sendJson, exitOnSignals, PASSWORD } = require("../lib");

exitOnSignals();
const opt = args({ port: "0", secret: "", "signaling-url": "" });
if (!opt.secret) throw new Error("--secret is required");
let secret = opt.secret;
// Tickets are signed with a key of this process only (Nextcloud's own signaling ticket secret).
const ticketKey = crypto.randomBytes(32);
// Hello 2.0 (Talk 17+): Nextcloud signs a JWT per user with its own key and publishes the
// public half in its capabilities (config.signaling.hello-v2-token-key), where a signalling
// server that speaks 2.0 reads it; this one key is Ed25519, as Nextcloud's default.
const helloKey = crypto.generateKeyPairSync("ed25519");
const helloPublicPem = helloKey.publicKey.export({ type: "spki", format: "pem" });
const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
function helloToken(user, issuer) {
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64url({ alg: "EdDSA", typ: "JWT" })}.${b64url({ iss: issuer, iat: now, exp: now + 60, sub: user, userdata: { displayname: user } })}`;
  return `${head}.${crypto.sign(null, Buffer.from(head), helloKey.privateKey).toString("base64url")}`;
}
// Nextcloud session ids handed out by the participants/active join: sessionId -> {user, room}.
const sessions = new Map();
// Nextcloud's PHP session (its cookie) remembers the Talk session of each room it joined
// (TalkSession): cookie -> Map(room -> sessionId). A second join with the same cookie ends the
// first session (RoomController::joinRoom, leaveRoomAsSession), as two tabs of one browser do.
const phpSessions = new Map();
const COOKIE = "oc_canary";
const MAX_SESSIONS = 10000;

const ocs = (res, status, data, message = "") =>
  sendJson(res, status, { ocs: { meta: { status: status < 300 ? "ok" : "failure", statuscode: status, message }, data } });
const hmac = (key, text) => crypto.createHmac("sha256", key).update(text).digest("hex");

// Basic auth: any user, the one app password.
function basicUser(req) {
  const m = /^Basic (.+)$/i.exec(req.headers.authorization || "");
  if (!m) return null;
  const text = Buffer.from(m[1], "base64").toString();
  const i = text.indexOf(":");
  if (i <= 0 || text.slice(i + 1) !== PASSWORD) return null;
  return text.slice(0, i);
}

// Talk's v1 ticket: random:timestamp:hmac(random:user:timestamp).
function issueTicket(user) {
  const random = crypto.randomBytes(16).toString("hex");
  const ts = Math.floor(Date.now() / 1000);
  return `${random}:${ts}:${hmac(ticketKey, `${random}:${user}:${ts}`)}`;
}
function validTicket(user, ticket) {
  const parts = typeof ticket === "string" ? ticket.split(":") : [];
  if (parts.length !== 3 || typeof user !== "string") return false;
  const want = hmac(ticketKey, `${parts[0]}:${user}:${parts[1]}`);
  return parts[2].length === want.length && crypto.timingSafeEqual(Buffer.from(parts[2]), Buffer.from(want));
}

function rawBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > 65536) return reject(new Error("body too large"));
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const error = (code, message) => ({ type: "error", error: { code, message } });

// The signalling server's backend requests, after the checksum (SignalingController::backend).
function backend(message) {
  switch (message && message.type) {
    case "auth": {
      const params = (message.auth && message.auth.params) || {};
      if (!validTicket(params.userid, params.ticket)) {
        return error("invalid_ticket", "The given ticket is not valid for this user.");
      }
      return { type: "auth", auth: { version: "1.0", userid: params.userid, user: { displayname: params.userid } } };
    }
    case "room": {
      const room = message.room || {};
      const known = sessions.get(room.sessionid);
      if (!known || known.room !== room.roomid || known.user !== room.userid) {
        return error("no_such_room", "The user is not invited to this room.");
      }
      if (room.action === "leave") sessions.delete(room.sessionid);
      const permissions = ["publish-audio", "publish-video", "publish-screen"];
      return { type: "room", room: { version: "1.0", roomid: room.roomid, properties: { name: room.roomid, type: 3 }, permissions } };
    }
    case "ping":
      return { type: "room", room: { version: "1.0" } };
    default:
      return error("unknown_type", `The given type ${JSON.stringify(message)} is not supported.`);
  }
}

// The request's PHP session: the cookie it sent, or a new one set on the reply (bounded).
function phpSession(req, res) {
  const m = new RegExp(`(?:^|; )${COOKIE}=([^;]+)`).exec(req.headers.cookie || "");
  if (m && phpSessions.has(m[1])) return phpSessions.get(m[1]);
  if (phpSessions.size >= MAX_SESSIONS) phpSessions.delete(phpSessions.keys().next().value);
  const id = crypto.randomBytes(16).toString("hex");
  const rooms = new Map();
  phpSessions.set(id, rooms);
  res.setHeader("set-cookie", `${COOKIE}=${id}; path=/; HttpOnly; SameSite=Lax`);
  return rooms;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  const path = url.pathname;
  try {
    if (req.method === "GET" && path === "/ocs/v2.php/cloud/capabilities") {
      return ocs(res, 200, {
        version: { major: 27, minor: 1, micro: 0, string: "27.1.0", edition: "", extendedSupport: false },
        capabilities: {
          spreed: {
            features: ["audio", "video", "chat-v2", "signaling-v3"],
            config: { signaling: { "hello-v2-token-key": helloPublicPem } },
          },
        },
      });
    }
    if (req.method === "POST" && path === "/ocs/v2.php/apps/spreed/api/v3/signaling/backend") {
      const body = await rawBody(req);
      const random = req.headers["spreed-signaling-random"] || "";
      const checksum = String(req.headers["spreed-signaling-checksum"] || "").toLowerCase();
      const want = hmac(secret, Buffer.concat([Buffer.from(random), body]));
      if (random.length < 32 || checksum.length !== want.length || !crypto.timingSafeEqual(Buffer.from(checksum), Buffer.from(want))) {
        // Nextcloud answers 200 with an error in the OCS data: the server relays it to the client.
        return ocs(res, 200, error("invalid_request", "The request could not be authenticated."));
      }
      let message;
      try {
        message = JSON.parse(body.toString());
      } catch {
        return ocs(res, 400, error("invalid_request", "The request is not JSON."));
      }
      return ocs(res, 200, backend(message));
    }
    if (req.method === "POST" && path === "/test/secret") {
      const body = JSON.parse((await rawBody(req)).toString() || "{}");
      if (typeof body.secret !== "string" || !body.secret) return sendJson(res, 400, { error: "secret required" });
      secret = body.secret;
      return sendJson(res, 200, { ok: true });
    }
    // The user's own OCS calls.
    const user = basicUser(req);
    const talkSession = user ? phpSession(req, res) : null;
    if (req.method === "GET" && path === "/ocs/v2.php/apps/spreed/api/v3/signaling/settings") {
      if (!user) return ocs(res, 401, [], "Current user is not logged in");
      const token = url.searchParams.get("token") || "";
      if (token.startsWith("forbidden")) return ocs(res, 404, []);
      const ticket = issueTicket(user);
      return ocs(res, 200, {
        signalingMode: "external",
        userId: user,
        hideWarning: true,
        server: opt["signaling-url"],
        ticket,
        helloAuthParams: { "1.0": { userid: user, ticket }, "2.0": { token: helloToken(user, `http://${req.headers.host}`) } },
        stunservers: [],
        turnservers: [],
        sipDialinInfo: "",
      });
    }
    const join = /^\/ocs\/v2\.php\/apps\/spreed\/api\/v4\/room\/([^/]+)\/participants\/active$/.exec(path);
    if (join && req.method === "POST") {
      if (!user) return ocs(res, 401, [], "Current user is not logged in");
      const token = decodeURIComponent(join[1]);
      if (token.startsWith("forbidden")) return ocs(res, 404, []);
      if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
      const previous = talkSession.get(token);
      if (previous) sessions.delete(previous);
      const sessionId = crypto.randomBytes(64).toString("base64url");
      sessions.set(sessionId, { user, room: token });
      talkSession.set(token, sessionId);
      return ocs(res, 200, { token, name: token, type: 3, participantType: 3, actorType: "users", actorId: user, sessionId });
    }
    return ocs(res, 404, [], "not found");
  } catch (e) {
    return sendJson(res, 500, { error: String(e && e.message) });
  }
});

server.listen(Number(opt.port), "127.0.0.1", () => {
  console.log(`ready nextcloud http://127.0.0.1:${server.address().port}`);
});
