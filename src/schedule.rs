//! Cron schedules: a probe's and a maintenance window's, parsed and checked (a schedule that
//! never fires is an error: it would run "healthy" and never probe nor page).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{Ctx, S};

/// A cron schedule with its text (for status output) and optional time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    /// Shared: a parsed pattern is ~5 KB (croner keeps a bitfield of years), and every probe
    /// on the `[defaults]` schedule holds a copy of it.
    pub cron: Arc<croner::Cron>,
    pub timezone: Option<chrono_tz::Tz>,
}

impl Schedule {
    /// Parses a 5-field (minutes) or 6-field (seconds first) cron expression.
    ///
    /// # Errors
    /// The parser's message.
    pub fn parse(expr: &str, timezone: Option<chrono_tz::Tz>) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; write 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        croner::Cron::from_str(expr)
            .map(|cron| Schedule {
                expr: expr.to_string(),
                cron: Arc::new(cron),
                timezone,
            })
            .map_err(|e| format!("`{expr}` is not a cron expression: {e}"))
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::SubsecRound;
        // croner carries the input's sub-second part into its answer; fire times are whole
        // seconds.
        let after = after.trunc_subsecs(0);
        match self.timezone {
            Some(tz) => self
                .cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
            None => self.cron.find_next_occurrence(&after, false).ok(),
        }
    }

    /// The shortest gap between two fires over the next `samples` fires from `from`: a probe
    /// deadline must stay below it, or runs would pile up.
    pub fn min_interval(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        samples: usize,
    ) -> Option<Duration> {
        let mut prev = self.next_after(from)?;
        let mut min: Option<Duration> = None;
        for _ in 0..samples {
            let next = self.next_after(prev)?;
            let gap = (next - prev).to_std().ok()?;
            min = Some(min.map_or(gap, |m| m.min(gap)));
            prev = next;
        }
        min
    }
}

/// `* * * * *`: the schedule of a probe that names none.
pub fn every_minute() -> Schedule {
    Schedule {
        expr: "* * * * *".into(),
        cron: Arc::new(
            croner::Cron::from_str("* * * * *")
                .unwrap_or_else(|_| unreachable!("constant pattern")),
        ),
        timezone: None,
    }
}

/// `key`'s cron expression (after `${ENV}`), in `tz`.
pub fn schedule(
    ctx: &mut Ctx<'_>,
    value: &S<String>,
    tz: Option<chrono_tz::Tz>,
    key: &str,
) -> Option<Schedule> {
    let text = ctx.env_str(value, key)?;
    match Schedule::parse(&text, tz) {
        // A schedule that never fires would run "healthy" and never probe nor page. Checked
        // from the system's time when the file is read (a config check, not a schedule run).
        Ok(s) if s.next_after(chrono::Utc::now()).is_none() => {
            ctx.error(
                Some(value.span()),
                key,
                format_args!("`{text}` never fires: no date matches it (e.g. 30 February)"),
            );
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            ctx.error(Some(value.span()), key, e);
            None
        }
    }
}

/// `key`'s IANA time zone (after `${ENV}`).
pub fn timezone(ctx: &mut Ctx<'_>, value: &S<String>, key: &str) -> Option<chrono_tz::Tz> {
    let text = ctx.env_str(value, key)?;
    match text.parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            ctx.error(
                Some(value.span()),
                key,
                format_args!("`{text}` is not an IANA time zone such as `Europe/Dublin`"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_take_five_and_six_fields() {
        assert!(Schedule::parse("* * * * *", None).is_ok());
        assert!(Schedule::parse("*/5 * * * * *", None).is_ok());
        assert!(Schedule::parse("* * *", None).is_err());
        let every_5s = Schedule::parse("*/5 * * * * *", None).unwrap();
        assert_eq!(
            every_5s.min_interval(chrono::Utc::now(), 10),
            Some(Duration::from_secs(5))
        );
    }
}
