"""ejabberd's external authentication program for the tests: one account, alice / canary-pass,
on any host. The protocol (ejabberd docs, "External Authentication"): each request is a 2-byte
big-endian length and `command:user:server[:password]`; each answer is length 2 and 1 (yes) or
0 (no)."""

import struct
import sys

USER, PASSWORD = "alice", "canary-pass"


def answer(ok):
    sys.stdout.buffer.write(struct.pack(">HH", 2, 1 if ok else 0))
    sys.stdout.buffer.flush()


def main():
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(2)
        if len(head) < 2:
            return
        (length,) = struct.unpack(">H", head)
        parts = stdin.read(length).decode("utf-8", "replace").split(":", 3)
        command = parts[0]
        if command == "auth" and len(parts) == 4:
            answer(parts[1] == USER and parts[3] == PASSWORD)
        elif command == "isuser" and len(parts) >= 2:
            answer(parts[1] == USER)
        else:
            answer(False)


if __name__ == "__main__":
    main()
