//! Per-character encodings undone (`%XX`, `&#NN;`, `&amp;`, `\uXXXX`), once and twice over,
//! with each decoded byte mapped back to the span of the original it stands for: a server that
//! encodes every character, letters and digits too, leaves nothing for the pattern to find.

use super::forms::ESCAPE_DEPTH;

/// A text with one more level of per-character encodings undone, and for each of its bytes
/// the span of the original text it stands for (a match maps back to whole encodings).
pub(super) struct Decoded {
    pub(super) text: String,
    spans: Vec<(usize, usize)>,
}

impl Decoded {
    /// The span of the original text that `range` of the decoded text came from.
    pub(super) fn source(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        match (self.spans.get(range.start), range.end.checked_sub(1)) {
            (Some(first), Some(last)) if last >= range.start => {
                first.0..self.spans.get(last).map_or(first.1, |s| s.1)
            }
            _ => 0..0,
        }
    }
}

/// The text decoded once and twice ([`ESCAPE_DEPTH`]), as far as decoding changes it. Linear
/// in the text, and nothing at all for text without `%`, `&` or `\`.
pub(super) fn decodings(text: &str) -> Vec<Decoded> {
    let mut out: Vec<Decoded> = Vec::new();
    for _ in 0..ESCAPE_DEPTH {
        let next = match out.last() {
            Some(d) => decode_once(&d.text, Some(&d.spans)),
            None => decode_once(text, None),
        };
        match next {
            Some(d) => out.push(d),
            None => break,
        }
    }
    out
}

/// Digits a numeric entity may have (leading zeros included) before it is taken as text.
const MAX_ENTITY_DIGITS: usize = 32;

/// One level of `%XX` (UTF-8, hex in either case), `&#NN;` / `&#xHH;` (leading zeros, either
/// case, `;` optional as HTML allows), `&amp;`-style names and `\uXXXX` (surrogate pairs too)
/// undone. `spans` maps `text` to the original (`None`: `text` is the original). `None` when
/// nothing was decoded.
fn decode_once(text: &str, spans: Option<&[(usize, usize)]>) -> Option<Decoded> {
    if !text.contains(['%', '&', '\\']) {
        return None;
    }
    let b = text.as_bytes();
    let origin = |from: usize, to: usize| -> (usize, usize) {
        match spans {
            Some(s) => (
                s.get(from).map_or(from, |x| x.0),
                s.get(to.saturating_sub(1)).map_or(to, |x| x.1),
            ),
            None => (from, to),
        }
    };
    let mut out = Decoded {
        text: String::with_capacity(text.len()),
        spans: Vec::with_capacity(text.len()),
    };
    let mut changed = false;
    let push = |out: &mut Decoded, c: char, from: usize, to: usize| {
        let span = origin(from, to);
        out.text.push(c);
        out.spans.extend(std::iter::repeat_n(span, c.len_utf8()));
    };
    let mut i = 0;
    while i < b.len() {
        let decoded = match b[i] {
            b'%' => percent_run(b, i),
            b'&' => entity(b, i).map(|(c, end)| vec![(c, i, end)]),
            b'\\' => unicode_escape(b, i).map(|(c, end)| vec![(c, i, end)]),
            _ => None,
        };
        match decoded {
            Some(chars) if !chars.is_empty() => {
                changed = true;
                let end = chars.last().map_or(i + 1, |c| c.2);
                for (c, from, to) in chars {
                    push(&mut out, c, from, to);
                }
                i = end;
            }
            _ => {
                // Copied as it is: a whole character (`i` is always at a character boundary).
                let c = text[i..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                let len = c.len_utf8();
                for k in 0..len {
                    let span = origin(i + k, i + k + 1);
                    out.spans.push(span);
                }
                out.text.push(c);
                i += len;
            }
        }
    }
    changed.then_some(out)
}

/// A run of `%XX` from `i` decoded as UTF-8: each character with its span. Bytes that are not
/// UTF-8 end the run (they are copied as text); `None` when the first one is not.
fn percent_run(b: &[u8], i: usize) -> Option<Vec<(char, usize, usize)>> {
    let hex = |at: usize| -> Option<u8> {
        let h = b.get(at + 1..at + 3)?;
        if b.get(at) != Some(&b'%') {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let mut out = Vec::new();
    let mut at = i;
    while let Some(lead) = hex(at) {
        let len = match lead {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => break,
        };
        let mut bytes = [0u8; 4];
        let mut ok = true;
        for (k, slot) in bytes.iter_mut().enumerate().take(len) {
            match hex(at + 3 * k) {
                Some(v) => *slot = v,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        let Some(c) = ok
            .then(|| std::str::from_utf8(&bytes[..len]).ok())
            .flatten()
            .and_then(|s| s.chars().next())
        else {
            break;
        };
        out.push((c, at, at + 3 * len));
        at += 3 * len;
    }
    (!out.is_empty()).then_some(out)
}

/// `&#NN;`, `&#xHH;` or a named entity at `i`: the character and where the entity ends.
fn entity(b: &[u8], i: usize) -> Option<(char, usize)> {
    let rest = b.get(i + 1..)?;
    if rest.first() == Some(&b'#') {
        let (radix, start) = match rest.get(1) {
            Some(b'x' | b'X') => (16, i + 3),
            _ => (10, i + 2),
        };
        let digits = b
            .get(start..)?
            .iter()
            .take(MAX_ENTITY_DIGITS + 1)
            .take_while(|d| char::from(**d).is_digit(radix))
            .count();
        if digits == 0 || digits > MAX_ENTITY_DIGITS {
            return None;
        }
        let text = std::str::from_utf8(&b[start..start + digits]).ok()?;
        let trimmed = text.trim_start_matches('0');
        let n = if trimmed.is_empty() {
            0
        } else {
            u32::from_str_radix(trimmed, radix).ok()?
        };
        let c = char::from_u32(n)?;
        let end = start + digits;
        return Some((
            c,
            if b.get(end) == Some(&b';') {
                end + 1
            } else {
                end
            },
        ));
    }
    for (name, c) in [
        (&b"amp;"[..], '&'),
        (b"lt;", '<'),
        (b"gt;", '>'),
        (b"quot;", '"'),
        (b"apos;", '\''),
    ] {
        if rest.starts_with(name) {
            return Some((c, i + 1 + name.len()));
        }
    }
    None
}

/// `\uXXXX` at `i` (hex in either case; a surrogate pair as one character).
fn unicode_escape(b: &[u8], i: usize) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u16> {
        if b.get(at..at + 2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(b.get(at + 2..at + 6)?).ok()?, 16).ok()
    };
    let first = unit(i)?;
    if let Some(c) = char::from_u32(u32::from(first)) {
        return Some((c, i + 6));
    }
    let second = unit(i + 6)?;
    let c = char::decode_utf16([first, second]).next()?.ok()?;
    Some((c, i + 12))
}

#[cfg(test)]
mod tests {
    use crate::redact::Redactor;

    #[test]
    fn scrubs_a_secret_with_every_character_encoded() {
        let pw = "Super5ecret!é";
        let r = Redactor::new([pw.to_string()]);
        let each = |f: &dyn Fn(char) -> String| pw.chars().map(f).collect::<String>();
        let pct = |c: char, upper: bool| {
            let mut b = [0u8; 4];
            c.encode_utf8(&mut b)
                .bytes()
                .map(|b| {
                    if upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    }
                })
                .collect::<String>()
        };
        let shapes = [
            each(&|c| pct(c, true)),
            each(&|c| pct(c, false)),
            each(&|c| format!("&#{};", u32::from(c))),
            each(&|c| format!("&#x{:x};", u32::from(c))),
            each(&|c| format!("&#X{:04X};", u32::from(c))),
            each(&|c| format!("&#000{}", u32::from(c))),
            each(&|c| format!("\\u{:04X}", u32::from(c))),
            // Twice over: the `%` encoded again, the `&` as `&amp;`.
            each(&|c| pct(c, true).replace('%', "%25")),
            each(&|c| format!("&amp;#{};", u32::from(c))),
            // Mixed: every other character encoded, each its own way.
            pw.chars()
                .enumerate()
                .map(|(i, c)| match i % 4 {
                    0 => c.to_string(),
                    1 => pct(c, i % 8 == 1),
                    2 => format!("&#{};", u32::from(c)),
                    _ => format!("&#x{:X};", u32::from(c)),
                })
                .collect(),
        ];
        for shape in shapes {
            let out = r.scrub(&format!("before {shape} after"));
            assert_eq!(out, "before [redacted] after", "{shape}");
        }
        // Encoded text that is not the secret stays as it is.
        for other in [
            "%53%75%70%65%72",
            "&#83;&#117;per",
            "100%",
            "a & b",
            "\\u12",
        ] {
            assert_eq!(r.scrub(other), other);
        }
    }
}
