//! The errors of the websocket kinds (`ws_connect`, `ws_send`, `ws_expect`) and of `webrtc`.
//! In `on_ws(kind, lines)` a ws_connect is `steps[0]` (lines 1-4) and the step of `kind` is
//! `steps[1]`: header line 5, `kind` line 7, `lines` from line 8. In `step(kind, lines)` the
//! only step's `kind` is line 3, `lines` from line 4.

use super::{check, on_ws, probe, step};

const WS: &str = "url = \"ws://127.0.0.1:9/\"\n";

#[test]
fn every_websocket_and_webrtc_step_error_names_file_line_column_and_key() {
    let connect = |lines: &str, key, says| step("ws_connect", &format!("{WS}{lines}"), key, says);
    let webrtc = |lines: &str, key, says| step("webrtc", lines, key, says);
    check(vec![
        // ws_connect
        step(
            "ws_connect",
            "max_frames = 5\n",
            "steps[0].url",
            "a ws_connect step needs `url`",
        )
        .mark_at("name = ‸\"s\""),
        step(
            "ws_connect",
            "url = ‸\"ftp://h/\"\n",
            "steps[0].url",
            "must be a ws or wss or http or https URL",
        ),
        connect(
            "protocol = ‸\"socketoi\"\n",
            "steps[0].protocol",
            "unknown protocol `socketoi` (did you mean `socketio`?)",
        ),
        connect(
            "namespace = ‸\"/chat\"\n",
            "steps[0].namespace",
            "`namespace` applies to `protocol = \"socketio\"` only",
        ),
        connect(
            "protocol = \"socketio\"\nnamespace = ‸\"chat\"\n",
            "steps[0].namespace",
            "a Socket.IO namespace starts with `/`",
        ),
        connect(
            "protocol = \"xmpp\"\n",
            "steps[0].domain",
            "an xmpp connection needs `domain`",
        )
        .mark_at("name = ‸\"s\""),
        connect(
            "protocol = \"socketio\"\nauth = ‸[1]\n",
            "steps[0].auth",
            "must be a table",
        ),
        step(
            "ws_connect",
            "url = \"ws://127.0.0.1:9/socket.io/?EIO=3&transport=websocket\"\nprotocol = \"socketio\"\nauth = ‸{ token = \"t\" }\n",
            "steps[0].auth",
            "with EIO=3 (Socket.IO 2)",
        ),
        connect(
            "subprotocols = [‸\"a b\"]\n",
            "steps[0].subprotocols[0]",
            "a subprotocol is one token",
        ),
        connect(
            "max_frames = ‸0\n",
            "steps[0].max_frames",
            "must be a whole number greater than zero",
        ),
        connect(
            "ping_json = ‸\"${JC_UNSET_PING}\"\n",
            "steps[0].ping_json",
            "`JC_UNSET_PING` is not set",
        ),
        connect(
            "headers = { \"a b\" = ‸\"x\" }\n",
            "steps[0].headers.a b",
            "not a valid header name",
        ),
        // ws_send
        on_ws(
            "ws_send",
            "",
            "steps[1]",
            "a ws_send step needs `text`, `json`, `hex` or `base64`",
        )
        .mark_at("name = ‸\"s\""),
        on_ws(
            "ws_send",
            "text = \"x\"\nevent = ‸\"e\"\n",
            "steps[1].event",
            "`event` does not apply to a ws_send on a `raw` connection",
        ),
        on_ws("ws_send", "hex = ‸\"zz\"\n", "steps[1].hex", "hex"),
        on_ws(
            "ws_send",
            "base64 = ‸\"***\"\n",
            "steps[1].base64",
            "base64",
        ),
        on_ws(
            "ws_send",
            "text = ‸\"{{x\"\n",
            "steps[1].text",
            "is never closed",
        ),
        probe(
            &format!(
                "[[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\n{WS}protocol = \"socketio\"\n\
                 [[steps]]\nname = \"s\"\nkind = \"ws_send\"\nevent = \"e\"\nargs = ‸{{ a = 1 }}\n"
            ),
            "steps[1].args",
            "must be an array",
        ),
        probe(
            &format!(
                "[[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\n{WS}protocol = \"actioncable\"\n\
                 [[steps]]\nname = \"s\"\nkind = \"ws_send\"\nsubscribe = ‸[1]\n"
            ),
            "steps[1].subscribe",
            "must be a table (the channel identifier)",
        ),
        // ws_expect
        on_ws(
            "ws_expect",
            "max_frames = 3\n",
            "steps[1]",
            "a ws_expect step needs `expect_json`",
        )
        .mark_at("name = ‸\"s\""),
        probe(
            &format!(
                "[[steps]]\nname = \"ws\"\nkind = \"ws_connect\"\n{WS}protocol = \"xmpp\"\ndomain = \"d\"\n\
                 [[steps]]\nname = \"s\"\nkind = \"ws_expect\"\nexpect_xml = ‸\"<a>\"\n"
            ),
            "steps[1].expect_xml",
            "not one XML element",
        ),
        on_ws(
            "ws_expect",
            "expect_binary = { prefix = ‸\"zz\" }\n",
            "steps[1].expect_binary.prefix",
            "hex",
        ),
        on_ws(
            "ws_expect",
            "expect_binary = { min_bytes = ‸-1 }\n",
            "steps[1].expect_binary.min_bytes",
            "min_bytes and max_bytes are byte counts (0 or more)",
        ),
        on_ws(
            "ws_expect",
            "expect_binary = { min_bytes = ‸9, max_bytes = 3 }\n",
            "steps[1].expect_binary.min_bytes",
            "min_bytes is larger than max_bytes",
        ),
        on_ws(
            "ws_expect",
            "expect_json = { a = 1 }\nmax_frames = ‸0\n",
            "steps[1].max_frames",
            "must be a whole number greater than zero",
        ),
        on_ws(
            "ws_expect",
            "expect_json = { a = 1 }\nextract = { a = { header = ‸\"x\" } }\n",
            "steps[1].extract.a.header",
            "`header` applies to http steps only",
        ),
        on_ws(
            "ws_expect",
            "expect_json = { a = 1 }\nextract = { a = { cookie = ‸\"x\" } }\n",
            "steps[1].extract.a.cookie",
            "`cookie` applies to http steps only",
        ),
        // ws_close: only the common keys
        on_ws(
            "ws_close",
            "text = ‸\"x\"\n",
            "steps[1].text",
            "`text` does not apply to a ws_close step",
        ),
        // webrtc
        webrtc("", "steps[0].action", "a webrtc step needs `action`").mark_at("name = ‸\"s\""),
        webrtc(
            "action = ‸\"dial\"\n",
            "steps[0].action",
            "`dial` is not a webrtc action",
        ),
        webrtc(
            "action = ‸\"answer\"\n",
            "steps[0].remote_sdp",
            "action \"answer\" needs `remote_sdp`",
        ),
        webrtc(
            "action = \"offer\"\necho = ‸5\n",
            "steps[0].echo",
            "`echo` does not apply to action offer",
        ),
        webrtc(
            "action = \"connect\"\necho = ‸5000\n",
            "steps[0].echo",
            "must be between 1 and 1000",
        ),
        webrtc(
            "action = \"offer\"\nsave_as = ‸\"a b\"\n",
            "steps[0].save_as",
            "must be a variable name",
        ),
        webrtc(
            "action = \"connect\"\nlocal_address = ‸\"0.0.0.0\"\n",
            "steps[0].local_address",
            "must be an IP address of this host",
        ),
        webrtc(
            "action = \"connect\"\nfrom = ‸\"a b\"\n",
            "steps[0].from",
            "must be a connection name",
        ),
        webrtc(
            "action = \"offer\"\ntrickle = ‸{ expect_json = { a = 1 } }\n",
            "steps[0].trickle",
            "needs `candidate`",
        ),
        webrtc(
            "action = \"offer\"\ntrickle = { candidate = { json = \"$.c\" }, websocket = \"w\", poll = ‸\"p\" }\n",
            "steps[0].trickle.poll",
            "give `websocket` or `poll`, not both",
        ),
        webrtc(
            "action = \"offer\"\ntrickle = { candidate = { json = \"$.c\" }, max_candidates = ‸0 }\n",
            "steps[0].trickle.max_candidates",
            "must be a whole number from 1 to 256",
        ),
    ]);
}
