//! Providers' documented field limits, and the one way text is cut to fit them: measured on what
//! is actually sent (after mrkdwn, HTML or JSON escaping), cut on character boundaries, so a
//! hostile body (an HTML error page, multi-byte text, long step names) can never get a page
//! refused with a 400 that is not retried.
//!
//! "Characters" are counted as UTF-16 code units: the providers' backends count that way or by
//! code points, and a UTF-16 count is never smaller, so staying under it is safe for both.

use std::fmt::Write as _;

/// How many units one character costs once escaped for a field.
pub type Cost = fn(char) -> usize;

// ---- Slack (https://docs.slack.dev/reference/block-kit/blocks) --------------------------------

/// Section block `text`: "Maximum length for the text in this field is 3000 characters."
/// (docs.slack.dev/reference/block-kit/blocks/section-block).
pub const SLACK_SECTION_TEXT: usize = 3000;
/// Section block `fields`: "Maximum number of items is 10. Maximum length for the text in each
/// item is 2000 characters." (same page).
pub const SLACK_FIELD_TEXT: usize = 2000;
pub const SLACK_FIELDS: usize = 10;
/// Header block: "Maximum length for the text in this field is 150 characters."
/// (docs.slack.dev/reference/block-kit/blocks/header-block).
pub const SLACK_HEADER_TEXT: usize = 150;
/// Context block: "Maximum number of items is 10"; each text object holds at most 3000
/// characters (docs.slack.dev/reference/block-kit/composition-objects/text-object).
pub const SLACK_CONTEXT_ELEMENTS: usize = 10;
pub const SLACK_TEXT_OBJECT: usize = 3000;
/// "You can include up to 50 blocks in each message" (api.slack.com/reference/block-kit/blocks).
pub const SLACK_BLOCKS: usize = 50;
/// The top-level `text` is truncated by Slack past 40,000 characters (chat.postMessage docs); it
/// is the notification line, so it is kept to a section's size.
pub const SLACK_TOP_TEXT: usize = 3000;

// ---- PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/)

/// `payload.summary`: "A brief text summary of the event ... Maximum of 1024 characters."
pub const PD_SUMMARY: usize = 1024;
/// `dedup_key`: "Deduplication key for correlating triggers and resolves. The maximum
/// permitted length of this property is 255 characters."
pub const PD_DEDUP_KEY: usize = 255;
/// The whole event: PagerDuty enforces a 512 KB event size since 2020 (the overview page; see
/// also prometheus/alertmanager#2178). Bytes of the serialized JSON.
pub const PD_EVENT_BYTES: usize = 512 * 1024;

// ---- Opsgenie Alert API (https://docs.opsgenie.com/docs/alert-api) ----------------------------

/// Create alert `message`: 130 characters.
pub const OG_MESSAGE: usize = 130;
/// Create alert `alias`: 512 characters.
pub const OG_ALIAS: usize = 512;
/// Create alert `description`: 15000 characters.
pub const OG_DESCRIPTION: usize = 15000;
/// Create alert `tags`: "20 x 50 characters".
pub const OG_TAG: usize = 50;
pub const OG_TAGS: usize = 20;
/// Create alert `details`: "Map of key-value pairs ... 8000 characters in total" (measured
/// here on the serialized map, quotes and separators included, which is never less).
pub const OG_DETAILS: usize = 8000;
/// Create alert `source`: 100 characters.
pub const OG_SOURCE: usize = 100;
/// Close alert `note`: 25000 characters.
pub const OG_NOTE: usize = 25000;

// ---- Alertmanager (https://prometheus.io/docs/alerting/latest/clients/) ----------------------

/// Alertmanager documents no length limit on annotations; these are our bounds, so what its
/// receivers template from them (Slack, PagerDuty, email) stays readable: the summary as
/// PagerDuty's, the description a screenful.
pub const AM_SUMMARY: usize = 1024;
pub const AM_DESCRIPTION: usize = 8000;

// ---- Email (RFC 5322) -------------------------------------------------------------------------

/// RFC 5322 §2.1.1: a line "SHOULD be no more than 78 characters"; lettre folds and encodes the
/// subject (RFC 2047), so the subject is bounded by what a mail client shows, not by the line.
pub const EMAIL_SUBJECT: usize = 200;
/// RFC 5322 §2.1.1: "Each line of characters MUST be no more than 998 characters"; the longest
/// header we write ourselves is `References:`/`Message-ID:` (ids are bounded below).
pub const EMAIL_LINE: usize = 998;
/// Our bound on the left part of a Message-ID (RFC 5322 sets none; it must fit one line).
pub const EMAIL_ID_LOCAL: usize = 200;

// ---- Cost functions ---------------------------------------------------------------------------

/// A plain character (UTF-16 code units, see the module docs).
pub fn plain(c: char) -> usize {
    c.len_utf16()
}

/// Slack mrkdwn: `&`, `<`, `>` must be sent as `&amp;`, `&lt;`, `&gt;`
/// (docs.slack.dev/messaging/formatting-message-text#escaping).
pub fn slack(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        c => c.len_utf16(),
    }
}

/// Bytes of the character inside a JSON string as serde_json writes it.
pub fn json_bytes(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// UTF-16 units of the character inside a JSON string (for character limits on serialized maps).
pub fn json_chars(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf16(),
    }
}

/// The cost of a whole string.
pub fn cost(text: &str, cost: Cost) -> usize {
    text.chars().map(cost).sum()
}

const ELLIPSIS: char = '…';

/// The longest prefix of `text` whose escaped cost, plus a closing `…` when cut, is at most
/// `budget`. Cut on a character boundary and before escaping, so an escape sequence is never
/// split. Returns the unescaped text; the caller escapes it.
pub fn fit(text: &str, budget: usize, cost_of: Cost) -> String {
    if cost(text, cost_of) <= budget {
        return text.to_string();
    }
    let room = match budget.checked_sub(cost_of(ELLIPSIS)) {
        Some(r) => r,
        None => return String::new(),
    };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let k = cost_of(c);
        if used + k > room {
            break;
        }
        used += k;
        end = i + c.len_utf8();
    }
    let mut out = text[..end].to_string();
    out.push(ELLIPSIS);
    out
}

/// Plain characters, cut with `…`.
pub fn fit_plain(text: &str, max: usize) -> String {
    fit(text, max, plain)
}

/// The fewest units a probe or region name is cut to in a page's first line: enough for on-call
/// to recognise it (the whole name is in the page's fields, tags and key).
pub const NAME_FLOOR: usize = 16;

/// A page's first line fitted to `max` units of `cost_of`: `lead` (a marker such as
/// `[FIRING critical] `, kept whole), then `summary`, which starts with the probe and names the
/// region a word or two on (`sim-join failing in eu-west-1: step "signalling" server_error after
/// 12 ms: OOM command not allowed …`). When the line is too long, the two names are cut first —
/// the longer one first, neither below [`NAME_FLOOR`] — so the failing step, the reason and the
/// server's words keep their place (Opsgenie's 130-character message); what still does not fit
/// is cut at the end, as [`fit`] does. A summary of another shape is only cut at the end.
pub fn fit_line(
    lead: &str,
    summary: &str,
    probe: &str,
    region: &str,
    max: usize,
    cost_of: Cost,
) -> String {
    let line = format!("{lead}{summary}");
    let total = cost(&line, cost_of);
    if total <= max {
        return line;
    }
    let Some(rest) = summary.strip_prefix(probe).filter(|_| !probe.is_empty()) else {
        return fit(&line, max, cost_of);
    };
    // `failing in`, `degraded in`, `recovered in`: the region within the next few words.
    let marker = format!(" in {region}");
    let (middle, region, tail) = match rest.find(&marker) {
        Some(i) if i <= 12 && !region.is_empty() => {
            let at = i + " in ".len();
            (&rest[..at], region, &rest[at + region.len()..])
        }
        _ => ("", "", rest),
    };
    let (mut p, mut r) = (cost(probe, cost_of), cost(region, cost_of));
    let mut excess = total - max;
    while excess > 0 {
        if p >= r && p > NAME_FLOOR {
            p -= 1;
        } else if r > NAME_FLOOR {
            r -= 1;
        } else if p > NAME_FLOOR {
            p -= 1;
        } else {
            break;
        }
        excess -= 1;
    }
    let shorter = format!(
        "{lead}{}{middle}{}{tail}",
        fit(probe, p, cost_of),
        fit(region, r, cost_of)
    );
    fit(&shorter, max, cost_of)
}

/// An identifier that must not be cut (two incidents would merge): kept whole when it fits,
/// else a readable prefix and a hash of the whole key, `prefix~0123456789abcdef`. Deterministic,
/// so a trigger and its resolve, before and after a restart, carry the same key.
pub fn fit_key(key: &str, max: usize) -> String {
    if cost(key, plain) <= max {
        return key.to_string();
    }
    let hash = format!("~{}", short_hash(key));
    let room = max.saturating_sub(hash.len());
    let mut used = 0;
    let mut end = 0;
    for (i, c) in key.char_indices() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        end = i + c.len_utf8();
    }
    format!("{}{hash}", &key[..end])
}

/// 16 hex digits of the SHA-256 of `text`: stable across versions and platforms.
pub fn short_hash(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut hash = String::with_capacity(16);
    for b in &digest.as_ref()[..8] {
        let _ = write!(hash, "{b:02x}");
    }
    hash
}

/// Slack's three control characters in mrkdwn.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` cut so that, once mrkdwn-escaped, it is at most `max` characters; returned escaped.
pub fn slack_fit(text: &str, max: usize) -> String {
    slack_escape(&fit(text, max, slack))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_counts_escapes_and_never_splits_them() {
        let text = "&".repeat(1000);
        let cut = slack_fit(&text, 3000);
        assert!(cost(&cut, plain) <= 3000, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(!cut.trim_end_matches('…').ends_with("&am"));
        // 599 escaped ampersands (2995) + the ellipsis.
        assert_eq!(cost(&cut, plain), 2996);
    }

    #[test]
    fn fit_cuts_multibyte_text_on_char_boundaries() {
        let text = "日本語🙂".repeat(500);
        for budget in [0, 1, 2, 3, 129, 130, 131] {
            let cut = fit_plain(&text, budget);
            assert!(
                cost(&cut, plain) <= budget,
                "{budget}: {}",
                cost(&cut, plain)
            );
        }
        // The emoji is two UTF-16 units: never half of one.
        assert_eq!(fit_plain("🙂🙂", 2), "…");
        assert_eq!(fit_plain("short", 130), "short");
    }

    #[test]
    fn json_cost_matches_serde_json() {
        let text = "a\"b\\c\nd\u{1}é🙂<>&";
        let sent = serde_json::to_string(text).unwrap_or_default();
        assert_eq!(sent.len(), cost(text, json_bytes) + 2);
    }

    #[test]
    fn fit_line_cuts_the_names_before_the_cause() {
        let probe = format!("join-{}", "p".repeat(120));
        let region = format!("region-{}", "r".repeat(80));
        let summary = format!(
            "{probe} failing in {region}: step \"signalling\" server_error after 12 ms: OOM command not allowed"
        );
        let line = fit_line("", &summary, &probe, &region, OG_MESSAGE, plain);
        assert!(cost(&line, plain) <= OG_MESSAGE, "{line}");
        assert!(
            line.ends_with("server_error after 12 ms: OOM command not allowed"),
            "{line}"
        );
        assert!(line.starts_with("join-pppp"), "{line}");
        assert!(line.contains(" failing in region-rrr"), "{line}");
        // Each name keeps at least NAME_FLOOR units, the ellipsis included.
        let (p, rest) = line.split_once(" failing in ").unwrap_or_default();
        assert!(cost(p, plain) >= NAME_FLOOR - 1 && p.ends_with('…'), "{p}");
        let r = rest.split_once(':').unwrap_or_default().0;
        assert!(cost(r, plain) >= NAME_FLOOR - 1 && r.ends_with('…'), "{r}");
        // Only as much as needed: a short region stays whole, the probe gives the room.
        let line = fit_line(
            "[FIRING critical] ",
            &summary.replace(&region, "eu-west-1"),
            &probe,
            "eu-west-1",
            SLACK_HEADER_TEXT,
            slack,
        );
        assert!(line.contains(" failing in eu-west-1: step"), "{line}");
        assert!(line.ends_with("OOM command not allowed"), "{line}");
        assert_eq!(cost(&line, slack), SLACK_HEADER_TEXT, "{line}");
        // Names at the floor and still too long: cut at the end, never over the limit.
        let long_cause = format!("{summary} {}", "x".repeat(500));
        let line = fit_line("", &long_cause, &probe, &region, OG_MESSAGE, plain);
        assert_eq!(cost(&line, plain), OG_MESSAGE);
        assert!(line.contains("step \"signalling\" server_error"), "{line}");
        // Fits: untouched; another shape: only cut at the end.
        assert_eq!(
            fit_line("", "a failing in b: x", "a", "b", 130, plain),
            "a failing in b: x"
        );
        let other = "x".repeat(200);
        assert_eq!(
            fit_line("", &other, &probe, &region, 130, plain),
            fit_plain(&other, 130)
        );
        // A region that is a word of the line ("in") is found only as ` in <region>`.
        let line = fit_line(
            "",
            &format!("{probe} failing in in: step \"a\" x"),
            &probe,
            "in",
            42,
            plain,
        );
        assert!(line.ends_with(" failing in in: step \"a\" x"), "{line}");
    }

    #[test]
    fn long_keys_are_hashed_deterministically() {
        let key = format!("joincanary/eu-west-1/{}/critical", "p".repeat(300));
        let a = fit_key(&key, PD_DEDUP_KEY);
        assert_eq!(a, fit_key(&key, PD_DEDUP_KEY));
        assert_eq!(a.chars().count(), PD_DEDUP_KEY);
        assert!(a.starts_with("joincanary/eu-west-1/ppp"));
        let other = key.replace("critical", "warning");
        assert_ne!(fit_key(&other, PD_DEDUP_KEY), a);
        assert_eq!(fit_key("short/key", PD_DEDUP_KEY), "short/key");
    }
}
