"""Reads one email message on stdin and prints it as JSON for the Rust tests.

{"headers": {name: [values]}, "text": str, "html": str, "attachments": [{"filename",
"content_type", "content"}], "structure": [content types, depth first]}
"""

import email
import email.policy
import json
import sys

msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
out = {"headers": {}, "text": "", "html": "", "attachments": [], "structure": [], "defects": []}
for name, value in msg.items():
    out["headers"].setdefault(name, []).append(str(value))
for part in msg.walk():
    out["structure"].append(part.get_content_type())
    out["defects"].extend(str(d) for d in part.defects)
    if part.is_multipart():
        continue
    if part.get_filename():
        out["attachments"].append({
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
            "content": part.get_payload(decode=True).decode("utf-8"),
        })
    elif part.get_content_type() == "text/plain":
        out["text"] = part.get_content()
    elif part.get_content_type() == "text/html":
        out["html"] = part.get_content()
print(json.dumps(out))
