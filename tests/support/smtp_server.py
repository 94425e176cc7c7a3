"""A scripted SMTP server for tests: `smtp_server.py OUT_DIR accept|reject`.

Listens on 127.0.0.1 (a free port, printed on stdout), writes each accepted message to
OUT_DIR/msg-N.eml, or answers `554 rejected` after DATA in `reject` mode. Exits when stdin closes,
so the test that started it never leaves it behind.
"""

import asyncio
import itertools
import os
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
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler), host="127.0.0.1", port=0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
