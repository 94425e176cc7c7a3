//! Property test of the redactor: a secret put into text in any shape this suite's own
//! encoders give (once or twice over, base64 too), between arbitrary text, leaves no shape of
//! it behind.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use joincanary::flow::{REDACTED, Redactor};
use proptest::prelude::*;

use crate::secrets::{form, html, json_ascii, json_inner, leak, pct_lower};

/// Characters that break naive matching, plain ones, and a few beyond ASCII. No `[` or `]`:
/// `[redacted]` itself must not spell part of a secret.
fn secret() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        3 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('0', '9'),
        3 => proptest::sample::select(vec![
            '"', '\\', '\t', '\n', ' ', '&', '=', '+', '%', '/', '?', '#', '<', '>', '\'', '{',
            '}', '$', '.', '-', '_', '~', ':', ';', ',', '@', '!', '*',
        ]),
        1 => proptest::sample::select(vec!['é', 'ß', 'ü', '€', '😀', '\u{2028}', '中']),
    ];
    proptest::collection::vec(c, 4..20).prop_map(|cs| cs.into_iter().collect::<String>())
}

fn encode(which: usize, s: &str) -> String {
    match which {
        0 => s.to_string(),
        1 => json_inner(s),
        2 => json_ascii(s),
        3 => form(s),
        4 => pct_lower(s),
        5 => html(s),
        6 => STANDARD.encode(s),
        _ => URL_SAFE_NO_PAD.encode(s),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_shape_of_a_secret_survives(
        secret in secret(),
        first in 0usize..8,
        second in 0usize..6,
        before in "[a-zA-Z0-9 :{}\"=&%+/\\\\]{0,10}",
        after in "[a-zA-Z0-9 :{}\"=&%+/\\\\]{0,10}",
    ) {
        // Base64 last (a server base64-ing a JSON body) only over the secret or its JSON form.
        let second = if first >= 6 { second % 2 } else { second };
        let shaped = encode(first, &encode(second, &secret));
        let text = format!("{before}{shaped}{after}");
        let out = Redactor::new([secret.clone()]).scrub(&text);
        let gaps = out.replace(REDACTED, "\u{1}");
        prop_assert!(
            leak(&gaps, &secret).is_none(),
            "{:?} as {:?} left {:?} in {:?}",
            secret,
            shaped,
            leak(&gaps, &secret),
            out
        );
    }
}
