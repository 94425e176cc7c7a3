//! The errors of a step's common keys and of the kinds that need no websocket (`http`,
//! `http_json`, `redis`, `turn`), with their shared parts (URLs, headers, `extract`, regexes,
//! JSON, thresholds). In `step(kind, lines)` the `[[steps]]` header is line 1, `kind` line 3,
//! `lines` from line 4.

use super::{check, probe, step};

const URL: &str = "url = \"http://127.0.0.1:9/\"\n";

#[test]
fn every_step_error_names_file_line_column_and_key() {
    let http = |lines: &str, key, says| step("http", &format!("{URL}{lines}"), key, says);
    check(vec![
        // Every kind's keys.
        step(
            "http",
            &format!("{URL}‸bogus = 1\n"),
            "steps[0].bogus",
            "unknown field `bogus`",
        ),
        step(
            "http",
            &format!("{URL}text = ‸\"hi\"\n"),
            "steps[0].text",
            "`text` does not apply to an http step (it is a key of ws_send)",
        ),
        probe(
            "[[steps]]\nname = \"s\"\nkind = ‸\"teleport\"\n",
            "steps[0].kind",
            "unknown step kind `teleport`",
        ),
        probe(
            "‸[[steps]]\nname = \"s\"\n",
            "steps[0].kind",
            "missing field `kind`",
        ),
        probe(
            &format!(
                "[[steps]]\nname = \"s\"\nkind = \"http\"\n{URL}[[steps]]\nname = ‸\"s\"\nkind = \"http\"\n{URL}"
            ),
            "steps[1].name",
            "step name `s` is used twice",
        ),
        probe(
            &format!("[[steps]]\nname = ‸\"a b\"\nkind = \"http\"\n{URL}"),
            "steps[0].name",
            "must be letters, digits",
        ),
        http(
            "connection = ‸\"a b\"\n",
            "steps[0].connection",
            "must be letters, digits",
        ),
        http(
            "timeout = ‸\"0s\"\n",
            "steps[0].timeout",
            "must be greater than zero",
        ),
        http(
            "cleanup = ‸\"yes\"\n",
            "steps[0].cleanup",
            "invalid type: string \"yes\", expected a boolean",
        ),
        step(
            "http",
            "url = \"http://127.0.0.1:9/\"\nheaders = { x = ‸\"{{token}}\" }\n",
            "steps[0].headers.x",
            "step `s` uses `{{token}}` before any step sets it",
        ),
        step(
            "ws_send",
            "text = \"x\"\n",
            "steps[0].kind",
            "needs a ws_connect step before it",
        )
        .mark_at("kind = ‸\"ws_send\""),
        // http
        step(
            "http",
            "method = \"GET\"\n",
            "steps[0].url",
            "an http step needs `url`",
        )
        .mark_at("name = ‸\"s\""),
        step(
            "http",
            "url = ‸\"not a url\"\n",
            "steps[0].url",
            "`not a url` is not a valid URL",
        ),
        step(
            "http",
            "url = ‸\"ftp://h/x\"\n",
            "steps[0].url",
            "must be an http or https URL with a host",
        ),
        step(
            "http",
            "url = ‸\"${JC_UNSET_URL}/login\"\n",
            "steps[0].url",
            "environment variable `JC_UNSET_URL` is not set",
        ),
        step(
            "http",
            "url = ‸\"http://h/{{x\"\n",
            "steps[0].url",
            "is never closed",
        ),
        http(
            "method = ‸\"GE T\"\n",
            "steps[0].method",
            "`GE T` is not an HTTP method",
        ),
        http(
            "json = { a = 1 }\nbody = ‸\"x\"\n",
            "steps[0].body",
            "give at most one of `json`, `form`, `body`",
        ),
        http(
            "expect_status = ‸[]\n",
            "steps[0].expect_status",
            "an empty list accepts no status",
        ),
        http(
            "expect_status = [200, ‸600]\n",
            "steps[0].expect_status",
            "`600` is not an HTTP status",
        ),
        http(
            "expect_status = ‸200\n",
            "steps[0].expect_status",
            "write a list in brackets, `[200]`",
        ),
        http(
            "batch = ‸true\n",
            "steps[0].batch",
            "`batch` reads a long poll's replies as events",
        ),
        http(
            "headers = { \"a b\" = ‸\"x\" }\n",
            "steps[0].headers.a b",
            "not a valid header name",
        ),
        http(
            "headers = { a = ‸\"${JC_TEST_CRLF}\" }\n",
            "steps[0].headers.a",
            "contains a line break or NUL",
        )
        .with_env(&[("JC_TEST_CRLF", "x\r\ny: 1")]),
        http(
            "headers = { a = ‸\"{{x|nope}}\" }\n",
            "steps[0].headers.a",
            "`nope` is not a template filter",
        ),
        http(
            "form = { a = ‸\"{{x\" }\n",
            "steps[0].form.a",
            "is never closed",
        ),
        http("body = ‸\"{{x\"\n", "steps[0].body", "is never closed"),
        http(
            "json = ‸{ a = \"{{x\" }\n",
            "steps[0].json",
            "is never closed",
        ),
        http(
            "expect_json = ‸\"${JC_UNSET_J}\"\n",
            "steps[0].expect_json",
            "`JC_UNSET_J` is not set",
        ),
        http(
            "expect_regex = ‸5\n",
            "steps[0].expect_regex",
            "must be a string or a list of strings",
        ),
        http(
            "expect_regex = ‸[\"a\", 5]\n",
            "steps[0].expect_regex",
            "must be a string or a list of strings",
        ),
        http("expect_regex = ‸\"(\"\n", "steps[0].expect_regex", "regex"),
        http("fail_regex = ‸\"(\"\n", "steps[0].fail_regex", "regex"),
        http(
            "fail_json = ‸{ a = \"{{x\" }\n",
            "steps[0].fail_json",
            "is never closed",
        ),
        http(
            "extract = { uuid = ‸{ json = \"/a\" } }\n",
            "steps[0].extract.uuid",
            "`uuid` cannot be used as a variable name",
        ),
        http(
            "extract = { a = ‸{ json = \"/a\", header = \"x\" } }\n",
            "steps[0].extract.a",
            "give exactly one of `json`, `header`, `cookie`, `regex`",
        ),
        http(
            "extract = { a = { regex = ‸\"(\" } }\n",
            "steps[0].extract.a.regex",
            "not a valid regex",
        ),
        http(
            "extract = { a = { json = ‸\"$.a[\" } }\n",
            "steps[0].extract.a.json",
            "`[` is never closed",
        ),
        http(
            "extract = { a = { json = ‸5 } }\n",
            "steps[0].extract.a.json",
            "invalid type: integer `5`",
        ),
        http(
            "extract = { a = { ‸jsn = \"/a\" } }\n",
            "steps[0].extract.a.jsn",
            "unknown field `jsn`",
        ),
        http(
            "poll = { a = { regex = ‸\"(\" } }\n",
            "steps[0].poll.a.regex",
            "not a valid regex",
        ),
        // http_json
        step(
            "http_json",
            &format!("{URL}gauges = {{ \"a b\" = ‸\"/x\" }}\n"),
            "steps[0].gauges.a b",
            "a gauge name must be letters, digits",
        ),
        step(
            "http_json",
            &format!("{URL}gauges = {{ a = ‸\"$.x[\" }}\n"),
            "steps[0].gauges.a",
            "`[` is never closed",
        ),
        step(
            "http_json",
            &format!("{URL}expect_status = [200]\n"),
            "steps[0].gauges",
            "an http_json step needs `gauges`",
        )
        .mark_at("name = ‸\"s\""),
        step(
            "http_json",
            &format!("{URL}gauges = {{ a = \"/a\" }}\nwarn_above = {{ b = ‸1.0 }}\n"),
            "steps[0].warn_above.b",
            "`b` is not a gauge of this step (it has a)",
        ),
        step(
            "http_json",
            &format!("{URL}gauges = {{ a = \"/a\" }}\nwarn_below = {{ a = ‸nan }}\n"),
            "steps[0].warn_below.a",
            "must be a finite number",
        ),
        // redis
        step(
            "redis",
            "channel = \"c\"\n",
            "steps[0].url",
            "a redis step needs `url`",
        )
        .mark_at("name = ‸\"s\""),
        step(
            "redis",
            "url = ‸\"http://h/\"\n",
            "steps[0].url",
            "must be a redis or rediss URL with a host",
        ),
        step(
            "redis",
            "url = \"redis://h/\"\npassword = ‸\"${JC_UNSET_PW}\"\n",
            "steps[0].password",
            "`JC_UNSET_PW` is not set",
        ),
        // turn
        step(
            "turn",
            "transport = \"udp\"\n",
            "steps[0].url",
            "a turn step needs `url`",
        )
        .mark_at("name = ‸\"s\""),
        step(
            "turn",
            "url = \"turn:127.0.0.1:3478\"\ntransport = ‸\"sctp\"\n",
            "steps[0].transport",
            "`sctp` is not `udp`, `tcp` or `tls`",
        ),
        step("turn", "url = ‸\"http://h/\"\n", "steps[0].url", "turn"),
        step(
            "turn",
            "url = \"turn:127.0.0.1:3478\"\nusername = \"u\"\nsecret = \"s\"\ncredential = ‸\"c\"\n",
            "steps[0].credential",
            "set `credential` or `secret`, not both",
        ),
        step(
            "turn",
            "url = \"turn:127.0.0.1:3478\"\ncredential_ttl = ‸\"0s\"\n",
            "steps[0].credential_ttl",
            "must be greater than zero",
        ),
    ]);
}
