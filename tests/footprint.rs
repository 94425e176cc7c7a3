//! The footprint goals that a test can hold without timing anything: how many series one run of
//! the shipped 5-step probe exports, by default and with `phase_histograms = true`.

use joincanary::metrics::Metrics;

use crate::support;

/// Series of `probe` in an exposition text (comments excluded).
fn series_of(text: &str, probe: &str) -> Vec<String> {
    let label = format!("probe=\"{probe}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_five_step_probe_exports_at_most_60_series_by_default() {
    let sim = support::start_sim().await;
    let probe = support::sim_probe(&sim);
    let run = crate::support::run_once(&probe).await;
    assert!(run.success, "{run:?}");

    let compact = Metrics::new("test").unwrap();
    compact.register_probe(&probe.name, "test", None);
    compact.record(&run, None);
    let series = series_of(&compact.render(), &probe.name);
    assert!(
        series.len() <= 60,
        "{} series:\n{}",
        series.len(),
        series.join("\n")
    );
    // The signalling round trip (the pub/sub path) keeps its histogram.
    assert!(series.iter().any(|l| l.contains(r#"phase="round_trip""#)));
    assert!(!series.iter().any(|l| l.contains(r#"phase="upgrade""#)));

    let full = Metrics::with_detail("test", true).unwrap();
    full.record(&run, None);
    let series = series_of(&full.render(), &probe.name);
    assert!(series.iter().any(|l| l.contains(r#"phase="upgrade""#)));
    assert!(
        series.len() > 150,
        "the full set has every phase: {}",
        series.len()
    );
    sim.shutdown().await;
}
