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
            .map_err(|e| match bad_field(expr) {
                Some(why) => format!("`{expr}`: {why}"),
                None => format!("`{expr}` is not a cron expression: {e}"),
            })
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
        self.gaps(from, samples)?.into_iter().min()
    }

    /// The longest gap between two fires over the next `samples` fires from `from`: how long
    /// a fault can go before the next run sees it.
    pub fn max_interval(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        samples: usize,
    ) -> Option<Duration> {
        self.gaps(from, samples)?.into_iter().max()
    }

    /// The gaps between the next `samples + 1` fires from `from`; `None` when it stops firing.
    fn gaps(&self, from: chrono::DateTime<chrono::Utc>, samples: usize) -> Option<Vec<Duration>> {
        let mut prev = self.next_after(from)?;
        let mut gaps = Vec::with_capacity(samples);
        for _ in 0..samples {
            let next = self.next_after(prev)?;
            gaps.push((next - prev).to_std().ok()?);
            prev = next;
        }
        Some(gaps)
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

/// Each field of a 6-field expression as `crontab(5)` names it, with the values it takes; a
/// 5-field one is the last five.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("weekday", "0-7 (Sunday is 0 or 7) or sun-sat"),
];

/// Which field of a 5- or 6-field expression the parser refuses, and what that field takes.
/// croner's own words name no field and may quote text the user never wrote (`0 2 * * sunday`
/// read "illegal character 'D' in part '0DAY'": it had replaced `sun` with `0`), so each field
/// is tried alone, every other field `*`.
fn bad_field(expr: &str) -> Option<String> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let names = FIELDS.get(FIELDS.len().checked_sub(parts.len())?..)?;
    parts.iter().zip(names).enumerate().find_map(|(i, (part, (name, takes)))| {
        let alone: Vec<&str> = (0..parts.len())
            .map(|j| if j == i { *part } else { "*" })
            .collect();
        croner::Cron::from_str(&alone.join(" ")).is_err().then(|| {
            format!(
                "the {name} field `{part}` is not valid: it takes {takes}, `*`, lists (`1,15`), ranges (`1-5`) and steps (`*/5`)"
            )
        })
    })
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

    /// Seen in a trial: `61 * * * *` read "Component error: Number out of bounds." and
    /// `0 2 * * sunday` "illegal character 'D' in part '0DAY'", naming no field.
    #[test]
    fn a_bad_field_is_named_with_what_it_takes() {
        let err = |expr| Schedule::parse(expr, None).err().unwrap_or_default();
        assert_eq!(
            err("61 * * * *"),
            "`61 * * * *`: the minute field `61` is not valid: it takes 0-59, `*`, lists (`1,15`), ranges (`1-5`) and steps (`*/5`)"
        );
        assert!(
            err("0 2 * * sunday").starts_with(
                "`0 2 * * sunday`: the weekday field `sunday` is not valid: it takes 0-7 (Sunday is 0 or 7) or sun-sat, "
            ),
            "{}",
            err("0 2 * * sunday")
        );
        assert!(err("*/5 * 24 * * *").contains("the hour field `24`"));
        assert!(err("0 0 0 * *").contains("the day-of-month field `0`"));
        assert!(err("0 0 1 13 *").contains("the month field `13`"));
        assert!(err("60 * * * * *").contains("the second field `60`"));
        assert!(Schedule::parse("0 2 * * sun", None).is_ok());
    }

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
