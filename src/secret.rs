//! [`Secret`]: a configured credential (routing key, API key, password, webhook URL) that
//! cannot reach a log line, a page or a status by being formatted. A leaf: pagers and
//! heartbeats hold their keys as `Secret`s; the redactor scrubs what servers echo.

/// A secret value (routing key, API key, password, webhook URL). `Debug` and `Display` print
/// `[redacted]`, so a secret cannot reach a log line by formatting its holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("abc123secret");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }
}
