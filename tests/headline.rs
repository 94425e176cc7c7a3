//! The headline promise under tokio's paused clock: with the shipped defaults (every minute,
//! 10 s jitter, confirm after 10 s, 2 failures to page), a broken join flow pages within 90 s of
//! the fault wherever in the minute it starts, and a single blip pages nobody.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use joincanary::clock::Clock;
use joincanary::flow::ProbePlan;
use joincanary::report::{FailureReason, ProbeRun, StepReport, Trigger};
use joincanary::scheduler::Runner;

/// A join flow that breaks during [`Self::broken_from`, `broken_until`): a failing run waits out
/// the 5 s signalling timeout, as the real one does.
struct Platform {
    broken_from: DateTime<Utc>,
    broken_until: DateTime<Utc>,
}

impl Runner for Platform {
    fn run(
        &self,
        probe: Arc<ProbePlan>,
        region: String,
        trigger: Trigger,
        clock: Clock,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ProbeRun> + Send>> {
        // The scheduler's clock, as the real flow reads it: a scheduler that passed another
        // (the system clock) would put every run outside the fault and fail this test.
        let started_at = clock.now();
        let (from, until) = (self.broken_from, self.broken_until);
        Box::pin(async move {
            // Broken if the fault is on when the signalling round trip happens.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let at = clock.now();
            let broken = at >= from && at < until;
            let took = if broken {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(5)
            };
            tokio::time::sleep(took).await;
            let step = StepReport {
                name: "signalling".into(),
                kind: joincanary::flow::StepKind::WsExpect.name(),
                success: !broken,
                duration_ms: took,
                reason: broken.then_some(FailureReason::NoMatch),
                error: broken.then(|| "no frame matched within 5.0 s".into()),
                phases: Default::default(),
                cleanup: false,
                gauges: Default::default(),
                cert_expiry: None,
                warnings: Vec::new(),
            };
            ProbeRun {
                probe: probe.name.clone(),
                region,
                success: !broken,
                started_at,
                duration_ms: took + Duration::from_millis(60),
                failed_step: broken.then(|| "signalling".into()),
                reason: broken.then_some(FailureReason::NoMatch),
                error: step.error.clone(),
                trigger,
                steps: vec![step],
            }
        })
    }
}

/// This region's fixed offset after each minute tick.
fn jitter() -> Duration {
    let plan = joincanary::config::load(
        &crate::support::root().join("config/joincanary.toml"),
        &crate::support::env(&[("REGION", "eu-west-1")]),
    )
    .unwrap();
    plan.probes[0].jitter
}

fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// Runs the real service (scheduler, policy, status) on the shipped config with `platform`
/// and returns when the critical alert opened, if it did within `horizon`.
async fn first_page(
    fault_at: Duration,
    fault_lasts: Duration,
    horizon: Duration,
) -> (Option<DateTime<Utc>>, usize) {
    let root = crate::support::root();
    let mut plan = joincanary::config::load(
        &root.join("config/joincanary.toml"),
        &crate::support::env(&[("REGION", "eu-west-1")]),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    plan.state_dir = state.path().to_path_buf();
    plan.pagers.clear();
    let probe = plan.probes[0].clone();
    assert_eq!(probe.schedule.expr, "* * * * *");
    assert!(probe.jitter > Duration::ZERO && probe.jitter < Duration::from_secs(10));
    assert_eq!(probe.alerting.confirm_delay, Duration::from_secs(10));

    let clock = Clock::starting_at(origin());
    let from = origin() + chrono::Duration::from_std(fault_at).unwrap();
    let runner = Arc::new(Platform {
        broken_from: from,
        broken_until: from + chrono::Duration::from_std(fault_lasts).unwrap(),
    });
    let (service, handles) = crate::support::Service::scripted(plan, runner, clock).await;
    let status = handles.status;
    let mut paged = None;
    let steps = horizon.as_millis() / 250;
    for _ in 0..steps {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if status.snapshot().iter().any(|p| !p.alerts.is_empty()) {
            paged = Some(clock.now());
            break;
        }
    }
    let failed_runs = status
        .snapshot()
        .iter()
        .flat_map(|p| p.history.iter())
        .filter(|h| !h.success)
        .count();
    service.shutdown.cancel();
    let _ = service.task.await;
    (paged, failed_runs)
}

#[tokio::test(start_paused = true)]
async fn a_broken_join_flow_pages_within_90_seconds_wherever_the_fault_starts() {
    // The fault starts at several points of the minute, the worst just after a run's signalling
    // round trip passed (tick + jitter + 70 ms).
    let mut worst = Duration::ZERO;
    for offset_ms in [60_000, 75_000, 90_000, 105_000, 119_000, 60_070, 60_500] {
        let offset_s = offset_ms / 1000;
        let offset = Duration::from_millis(offset_ms);
        let fault_at = if offset_ms % 1000 == 0 {
            offset
        } else {
            offset + jitter()
        };
        let paged = first_page(
            fault_at,
            Duration::from_secs(3600),
            Duration::from_secs(400),
        )
        .await
        .0
        .unwrap_or_else(|| panic!("fault at +{offset_s}s never paged"));
        let delay = (paged - (origin() + chrono::Duration::from_std(fault_at).unwrap()))
            .to_std()
            .unwrap();
        assert!(
            delay <= Duration::from_secs(90),
            "fault at +{offset_s}s paged after {delay:?}"
        );
        worst = worst.max(delay);
    }
    println!("worst time to page: {worst:?}");
}

#[tokio::test(start_paused = true)]
async fn a_blip_shorter_than_the_confirm_delay_pages_nobody() {
    // Broken for 3 s around a scheduled run: that run fails, the confirmation 10 s later passes.
    for offset_s in [60, 120, 180] {
        let fault_at = Duration::from_secs(offset_s) + jitter() - Duration::from_secs(1);
        let (paged, failed_runs) =
            first_page(fault_at, Duration::from_secs(3), Duration::from_secs(300)).await;
        assert_eq!(
            failed_runs, 1,
            "the blip at +{offset_s}s failed exactly one run"
        );
        assert_eq!(paged, None, "a 3 s blip at +{offset_s}s paged");
    }
}
