// An API that takes a JWT signed with a private key, as Jitsi's ASAP (`asap_key_server`),
// 8x8's Jitsi as a Service and OIDC-style gateways do: `GET /verify` with
// `Authorization: Bearer <token>` answers 200 only when the npm `jose` package (the JWT library
// livekit-server-sdk verifies with; not joincanary's code) verifies the token with the PUBLIC
// key its header's `kid` names: `alg` that key's, the signature, `iss` and `aud` the configured
// ones, `exp`, `nbf` and `iat` present and `exp`/`nbf` current.
//
//   node tests/servers/jwt/server.js --port 0 --keys KEYS.json --issuer ISS --audience AUD
//
// KEYS.json: {"<kid>": {"alg": "RS256", "spki": "-----BEGIN PUBLIC KEY-----…"}, …}.
// Prints `ready jwt http://127.0.0.1:PORT`. 200 is `{"alg", "kid", "claims"}`; a refused
// token is 401 `{"error": "invalid token: <jose's words>", "token"}` (a server echoing what it
// was sent: the prober must scrub it). `GET /seen` lists every token it was sent.
"use strict";
const fs = require("fs");
const http = require("http");
const jose = require("jose");
const { args, sendJson, exitOnSignals } = require("../lib");

exitOnSignals();
const opt = args({ port: "0", keys: "", issuer: "", audience: "" });
const keys = JSON.parse(fs.readFileSync(opt.keys, "utf8"));
// Bounded: a test sends tens.
const seen = [];

async function verify(token) {
  const header = jose.decodeProtectedHeader(token);
  const known = keys[header.kid];
  if (!known) throw new Error(`no public key for kid ${JSON.stringify(header.kid)}`);
  const key = await jose.importSPKI(known.spki, known.alg);
  const { payload, protectedHeader } = await jose.jwtVerify(token, key, {
    algorithms: [known.alg],
    issuer: opt.issuer,
    audience: opt.audience,
    requiredClaims: ["exp", "nbf", "iat"],
  });
  return { alg: protectedHeader.alg, kid: protectedHeader.kid, claims: payload };
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/seen") return sendJson(res, 200, seen);
  if (req.method !== "GET" || url.pathname !== "/verify") return sendJson(res, 404, { error: "not found" });
  const token = (req.headers.authorization || "").replace(/^Bearer /, "");
  if (seen.length < 1000) seen.push(token);
  try {
    sendJson(res, 200, await verify(token));
  } catch (e) {
    sendJson(res, 401, { error: `invalid token: ${e.message}`, token });
  }
});

server.listen(Number(opt.port), "127.0.0.1", () => {
  console.log(`ready jwt http://127.0.0.1:${server.address().port}`);
});
