// Shared bits of the node test servers: argument parsing, signed login tokens, JSON bodies.
"use strict";
const crypto = require("crypto");

// `--name value` pairs into an object; unknown names are kept so each server reads its own.
function args(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (argv[i + 1] === undefined) throw new Error(`missing value for ${argv[i]}`);
    out[key] = argv[i + 1];
  }
  return out;
}

// Tokens are signed, not stored, so a token issued by one process is accepted by the other.
const SECRET = process.env.TEST_SERVER_SECRET || "joincanary-test-secret";
function issueToken(user) {
  const body = Buffer.from(JSON.stringify({ user, iat: Date.now() })).toString("base64url");
  const mac = crypto.createHmac("sha256", SECRET).update(body).digest("base64url");
  return `${body}.${mac}`;
}
function verifyToken(token) {
  if (typeof token !== "string") return null;
  const [body, mac] = token.split(".");
  if (!body || !mac) return null;
  const want = crypto.createHmac("sha256", SECRET).update(body).digest("base64url");
  if (mac.length !== want.length || !crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(want))) return null;
  try {
    return JSON.parse(Buffer.from(body, "base64url").toString()).user || null;
  } catch {
    return null;
  }
}

// Reads a small JSON or form body (bounded: test clients only).
function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = "";
    req.on("data", (c) => {
      data += c;
      if (data.length > 65536) reject(new Error("body too large"));
    });
    req.on("end", () => {
      const type = req.headers["content-type"] || "";
      try {
        if (type.includes("application/x-www-form-urlencoded")) {
          resolve(Object.fromEntries(new URLSearchParams(data)));
        } else {
          resolve(data ? JSON.parse(data) : {});
        }
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

// POST /api/login {username, password}: any username, the one test password.
const PASSWORD = process.env.TEST_SERVER_PASSWORD || "canary-pass";
async function login(req, res) {
  let body;
  try {
    body = await readBody(req);
  } catch {
    return sendJson(res, 400, { error: "bad request body" });
  }
  if (typeof body.username !== "string" || !body.username || body.password !== PASSWORD) {
    return sendJson(res, 401, { error: "invalid credentials" });
  }
  sendJson(res, 200, { token: issueToken(body.username), user: body.username });
}

// Stop on SIGTERM/SIGINT at once (a dangling Redis reconnect must never keep a process alive),
// and when the parent is gone: a test killed before its handle dropped (e.g. by Ctrl-C, which
// misses the server's own process group) must not leave the server behind.
function exitOnSignals() {
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 500).unref();
}

module.exports = { args, issueToken, verifyToken, readBody, sendJson, login, exitOnSignals, PASSWORD };
