//! Where a request carries a credential by its place, written literally in a probe file and so
//! known to no redactor: a header, query parameter or body field whose name says credential, a
//! URL path segment where a hook's key or a join token sits.

/// A header, query parameter or body field whose name says it carries a credential
/// (`X-Api-Key`, `access_token`, `client_secret`, `Passwd`, `sig`): its value is a secret
/// however it was written.
pub fn names_a_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    const WORDS: [&str; 11] = [
        "token",
        "secret",
        "passw",
        "pwd",
        "auth",
        "session",
        "ticket",
        "credential",
        "signature",
        "jwt",
        "cookie",
    ];
    WORDS.iter().any(|w| name.contains(w))
        || name.ends_with("key")
        || matches!(name.as_str(), "sig" | "sid" | "pass" | "code")
}

/// A path segment after which every segment is a hook's key: Mattermost's `/hooks/<key>`,
/// Discord's `/api/webhooks/<id>/<token>`, a generic `/webhook/<id>/<secret>`.
const HOOK_WORDS: [&str; 4] = ["hooks", "hook", "webhooks", "webhook"];

/// A path segment whose next segment is a credential: `/join/<token>`, `/invite/<code>`,
/// `/token/<t>`, healthchecks' `/ping/<uuid>`.
const KEY_WORDS: [&str; 14] = [
    "join",
    "invite",
    "invitation",
    "token",
    "tokens",
    "key",
    "keys",
    "apikey",
    "api_key",
    "secret",
    "secrets",
    "password",
    "ping",
    "integration",
];

/// A segment of at least this many characters, of the characters a token is written in
/// (letters, digits, `-_.~`) and holding a letter and a digit, looks like a token wherever it
/// stands: Slack's 24-character hook key, a UUID, a JWT. Words and slugs (`video-rooms`,
/// `v1`) are shorter or lack the digit.
const TOKEN_SEGMENT_CHARS: usize = 20;

/// The segments of `url`'s path that carry a credential by their place (after `hooks`,
/// `webhooks`: all of them; after `join`, `invite`, `token`, `key`, `ping`: the next one) or
/// by their shape (see [`TOKEN_SEGMENT_CHARS`]), as written and percent-decoded. A server
/// echoing the path (`no such room /join/…`) or a redirect's `Location` puts them in an error.
pub fn path_credentials(url: &url::Url) -> Vec<String> {
    let Some(segments) = url.path_segments() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut after_hook = false;
    let mut after_key = false;
    for segment in segments {
        let word = segment.to_ascii_lowercase();
        if after_hook || after_key || token_shaped(segment) {
            out.push(segment.to_string());
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            if decoded != segment {
                out.push(decoded.into_owned());
            }
        }
        after_hook |= HOOK_WORDS.contains(&word.as_str());
        after_key = KEY_WORDS.contains(&word.as_str());
    }
    out.retain(|s| !s.is_empty());
    out
}

fn token_shaped(segment: &str) -> bool {
    segment.len() >= TOKEN_SEGMENT_CHARS
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment.bytes().any(|b| b.is_ascii_alphabetic())
}

/// The values of a request body's fields whose name says credential (see
/// [`names_a_credential`]): a JSON body's members at any depth (`{"password": "…"}`,
/// `{"auth": {"client_secret": "…"}}`), a form's pairs (`password=…&user=x`). Only a field's
/// own string or number is taken: `{"auth": {"type": "m.login.dummy"}}` keeps its type
/// readable. A body that is neither (XML, plain text) gives nothing.
pub fn body_credentials(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let body = body.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        json_credentials(&v, &mut out);
    } else if looks_like_form(body) {
        out.extend(
            url::form_urlencoded::parse(body.as_bytes())
                .filter(|(name, _)| names_a_credential(name))
                .map(|(_, value)| value.into_owned()),
        );
    }
    out
}

/// The credential fields of a JSON value (see [`body_credentials`]), into `out`.
pub fn json_credentials(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::Object(members) => {
            for (name, value) in members {
                match value {
                    Value::String(s) if names_a_credential(name) => out.push(s.clone()),
                    Value::Number(n) if names_a_credential(name) => out.push(n.to_string()),
                    other => json_credentials(other, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                json_credentials(item, out);
            }
        }
        _ => {}
    }
}

/// `a=1&b=2`: a form is one line of `name=value` pairs without spaces (form-encoding turns a
/// space into `+`); XML or prose is not read as one.
fn looks_like_form(body: &str) -> bool {
    body.contains('=') && !body.contains(|c: char| c.is_whitespace() || c == '<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_fields_named_as_credentials_are_taken_in_json_and_forms() {
        assert_eq!(
            body_credentials(
                r#"{"user":"canary","Password":"hunter2","auth":{"type":"m.login.dummy","client_secret":"cs-1"},"pin":1234,"api_key":98765}"#
            ),
            ["hunter2", "98765", "cs-1"]
        );
        assert_eq!(
            body_credentials("password=hunter%202&user=x&ACCESS_TOKEN=t-9&Passwd=p"),
            ["hunter 2", "t-9", "p"]
        );
        assert_eq!(
            body_credentials("<auth mechanism='PLAIN'>x=</auth>"),
            Vec::<String>::new()
        );
        assert_eq!(body_credentials("hello"), Vec::<String>::new());
    }

    #[test]
    fn path_segments_carrying_credentials_by_place_or_shape() {
        let parts = |u: &str| path_credentials(&url::Url::parse(u).unwrap());
        assert_eq!(
            parts("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXX1"),
            ["XXXXXXXXXXXXXXXXXXXXXXX1"]
        );
        assert_eq!(
            parts("https://discord.com/api/webhooks/1234/tok-en"),
            ["1234", "tok-en"]
        );
        assert_eq!(parts("https://chat.example/hooks/abcd"), ["abcd"]);
        assert_eq!(
            parts("http://meet.example/join/r%20oom/lobby?token=x"),
            ["r%20oom", "r oom"]
        );
        assert_eq!(
            parts("http://meet.example/api/v1/video-rooms/lobby"),
            Vec::<String>::new()
        );
    }
}
