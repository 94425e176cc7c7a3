"""A scripted SMTP server for tests:
`smtp_server.py OUT_DIR accept|reject [starttls|tls CERT KEY [CLIENT_CA]]`.

Listens on 127.0.0.1 (a free port, printed on stdout), writes each accepted message to
OUT_DIR/msg-N.eml, or answers `554 rejected` after DATA in `reject` mode. Exits when stdin closes,
so the test that started it never leaves it behind. With `starttls` it offers STARTTLS and takes
no mail before it; with `tls` it speaks TLS from the first byte; either with the certificate
CERT and its key KEY (PEM), and with CLIENT_CA it requires a client certificate signed by it.
"""

import asyncio
import itertools
import logging
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, out_dir, reject):
        self.out_dir = out_dir
        self.reject = reject
        self.counter = itertools.count()

    async def handle_DATA(self, server, session, envelope):
        if self.reject:
            return "554 rejected"
        n = next(self.counter)
        tmp = os.path.join(self.out_dir, f"msg-{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.content)
        # Renamed whole, so the test never reads half a message.
        os.rename(tmp, os.path.join(self.out_dir, f"msg-{n}.eml"))
        return "250 OK"


async def main():
    out_dir, mode = sys.argv[1], sys.argv[2]
    handler = Handler(out_dir, mode == "reject")
    tls, context = None, None
    if len(sys.argv) > 3:
        tls, cert, key = sys.argv[3:6]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        # The handshakes tests refuse on purpose would print tracebacks into the test output.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        if len(sys.argv) > 6:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[6])
    loop = asyncio.get_running_loop()
    if tls == "starttls":
        factory = lambda: SMTP(handler, tls_context=context, require_starttls=True)
    else:
        factory = lambda: SMTP(handler)
    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=0,
        ssl=context if tls == "tls" else None,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
