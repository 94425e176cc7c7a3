//! The status document on the system clock: the service records on its own clock (monotonic
//! from the time read at start), the page and `/api/v1/status` show wall-clock times.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::StatusDoc;
use crate::report::ProbeRun;

impl StatusDoc {
    /// The document with every time moved by `offset` (the system clock minus the service's,
    /// [`crate::clock::Clock::offset`]): the service records on its own clock, which counts on unstepped
    /// after the host's clock was stepped, but the page and `/api/v1/status` show wall-clock
    /// times, which people and the other regions read on the system clock. A no-op at zero.
    pub fn on_system(mut self, offset: chrono::TimeDelta) -> StatusDoc {
        if offset.is_zero() {
            return self;
        }
        let at = |t: &mut DateTime<Utc>| {
            if let Some(moved) = t.checked_add_signed(offset) {
                *t = moved;
            }
        };
        let maybe = |t: &mut Option<DateTime<Utc>>| {
            if let Some(t) = t {
                at(t);
            }
        };
        let run = |r: &mut Option<Arc<ProbeRun>>| {
            if let Some(r) = r {
                at(&mut Arc::make_mut(r).started_at);
            }
        };
        for p in &mut self.probes {
            maybe(&mut p.next_run);
            maybe(&mut p.last_success);
            maybe(&mut p.failing_since);
            run(&mut p.last);
            run(&mut p.last_good);
            p.history.iter_mut().for_each(|h| at(&mut h.time));
            p.alerts.iter_mut().for_each(|a| at(&mut a.since));
            for h in &mut p.hourly {
                h.t = h.t.saturating_add(offset.num_seconds());
            }
        }
        for d in &mut self.delivery {
            maybe(&mut d.last_success);
            maybe(&mut d.last_error_at);
            maybe(&mut d.failing_since);
            maybe(&mut d.oldest_queued);
            for m in &mut d.members {
                maybe(&mut m.last_success);
                maybe(&mut m.last_error_at);
                maybe(&mut m.failing_since);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Status;
    use crate::clock::Clock;

    /// After the host's clock was stepped an hour ahead, the document shows every time on the
    /// system clock: the run the service stamped 12:00 by its own clock reads 13:00, as the
    /// host (and the other regions) say. Before, the page lagged the step until a restart.
    #[test]
    fn the_document_shows_times_on_the_system_clock() {
        let status = Status::new("r").with_clock(Clock::starting_at(super::super::tests::t0()));
        status.set_probes(&[("p".into(), "* * * * *".into())]);
        status.record(&Arc::new(super::super::tests::run("p", false, 10)));
        let mut doc = status.doc();
        doc.delivery = vec![crate::delivery::PagerHealth {
            last_error_at: Some(super::super::tests::t0()),
            ..Default::default()
        }];
        let moved = doc.clone().on_system(chrono::TimeDelta::hours(1));
        let later = super::super::tests::t0() + chrono::TimeDelta::hours(1);
        let (p, q) = (&doc.probes[0], &moved.probes[0]);
        assert_eq!(
            p.last.as_ref().unwrap().started_at,
            super::super::tests::t0()
        );
        assert_eq!(q.last.as_ref().unwrap().started_at, later);
        assert_eq!((q.failing_since, q.history[0].time), (Some(later), later));
        assert_eq!(q.hourly[0].t, p.hourly[0].t + 3600);
        assert_eq!(moved.delivery[0].last_error_at, Some(later));
        let same = doc.clone().on_system(chrono::TimeDelta::zero());
        assert_eq!(
            same.probes[0].failing_since,
            Some(super::super::tests::t0())
        );
    }
}
