//! What a hostile server writes never reaches a terminal as control characters: an escape
//! sequence in a Redis error or a pager's error reply (`ESC ]0;…BEL` retitles the terminal,
//! `ESC [2J` clears it) would otherwise be printed raw by `once` and `test-page`, and a line
//! break would forge a line of their output.

use crate::hostile::{redis_flood, test_page_error};

/// Escape sequences and a forged line, as a server would send them.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\rFAKE ok\u{8}";

fn assert_plain(what: &str, text: &str) {
    assert!(
        !text.chars().any(char::is_control),
        "{what} carries control characters: {text:?}"
    );
}

/// A Redis error line (`-ERR …`) is the server's own text, put into the step's error as it
/// came: `once` printed it raw into its table.
#[tokio::test]
async fn a_redis_error_with_escape_sequences_reaches_no_terminal() {
    let head: &'static str = Box::leak(format!("-ERR {HOSTILE} tail\r\n").into_boxed_str());
    let (run, _) = redis_flood(head, b"").await;
    let error = run.error.clone().unwrap_or_else(|| panic!("{run:#?}"));
    assert!(error.contains("FAKE ok"), "{error}");
    assert_plain("the run's error", &error);
    let table = joincanary::output::table(std::slice::from_ref(&run));
    assert_plain("once's table", &table.replace('\n', ""));
}

/// A pager's error reply is quoted in the delivery error that `test-page` prints and the
/// log and status page show.
#[tokio::test]
async fn a_pager_error_reply_with_escape_sequences_reaches_no_terminal() {
    let body = format!("bad key {HOSTILE} tail");
    let addr = crate::hostile::fixed_http(
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
    .await;
    let error = test_page_error(&format!(
        "[[pager]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\n"
    ))
    .await;
    assert!(error.contains("FAKE ok"), "{error}");
    assert_plain("the delivery error", &error);
}
