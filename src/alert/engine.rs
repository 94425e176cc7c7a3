//! The alert policy applied to a stream of runs: per-probe state, persisted atomically to
//! `{state_dir}/alert-state.json`, so an open incident stays open across a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::policy::{AlertContext, Decision, PolicyConfig, ProbeAlertState};
use super::{Link, Severity};
use crate::config::Plan;
use crate::report::ProbeRun;

/// The state file's name inside `state_dir`.
pub const STATE_FILE: &str = "alert-state.json";

/// Why state could not be saved (loading problems are logged and start fresh: a corrupt file
/// must not stop the canary from probing).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Alert state for every probe of one region.
pub struct AlertEngine {
    region: String,
    configs: HashMap<String, PolicyConfig>,
    links: Vec<Link>,
    states: BTreeMap<String, ProbeAlertState>,
    path: PathBuf,
}

impl AlertEngine {
    /// Loads saved state for `plan`'s probes (state of probes no longer configured is dropped).
    pub fn load(plan: &Plan) -> AlertEngine {
        let path = plan.state_dir.join(STATE_FILE);
        let mut states: BTreeMap<String, ProbeAlertState> = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(), "alert state unreadable; starting fresh");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read alert state; starting fresh");
                BTreeMap::new()
            }
        };
        states.retain(|probe, _| plan.probe(probe).is_some());
        let open: usize = states.values().map(|s| s.open().count()).sum();
        if open > 0 {
            tracing::info!(region = %plan.region, open, "restored open alerts");
        }
        let links = super::links(plan);
        AlertEngine {
            region: plan.region.clone(),
            configs: plan
                .probes
                .iter()
                .map(|p| (p.name.clone(), p.alerting.clone()))
                .collect(),
            links,
            states,
            path,
        }
    }

    /// Feeds one run; saves state when it changed.
    pub fn observe(&mut self, run: &ProbeRun, now: DateTime<Utc>) -> Vec<Decision> {
        let Some(config) = self.configs.get(&run.probe) else {
            return Vec::new();
        };
        let state = self.states.entry(run.probe.clone()).or_default();
        let before = durable(state, config);
        let cx = AlertContext {
            probe: &run.probe,
            region: &self.region,
            config,
            links: &self.links,
        };
        let decisions = state.observe(&cx, run, now);
        if durable(state, config) != before {
            self.save_logged();
        }
        decisions
    }

    /// Reminders and held-back triggers; returns (probe, decision) pairs.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<(String, Decision)> {
        let mut out = Vec::new();
        for (probe, state) in &mut self.states {
            let Some(config) = self.configs.get(probe) else {
                continue;
            };
            let cx = AlertContext {
                probe,
                region: &self.region,
                config,
                links: &self.links,
            };
            out.extend(state.tick(&cx, now).into_iter().map(|d| (probe.clone(), d)));
        }
        if !out.is_empty() {
            self.save_logged();
        }
        out
    }

    /// The pagers a probe's notifications go to (`None`: all).
    pub fn pagers(&self, probe: &str) -> Option<&[String]> {
        self.configs.get(probe).and_then(|c| c.pagers.as_deref())
    }

    /// The last trigger of every incident on-call was told of, with its probe: what a pager
    /// added to a running prober must hear to know of incidents already open.
    pub fn open_triggers(&self) -> Vec<(String, super::Notification)> {
        self.states
            .iter()
            .flat_map(|(probe, s)| {
                s.open()
                    .filter(|(_, a)| a.notified_at.is_some())
                    .map(move |(_, a)| (probe.clone(), a.last.clone()))
            })
            .collect()
    }

    /// Open alerts of a probe.
    pub fn open(&self, probe: &str) -> Vec<(Severity, &super::policy::OpenAlert)> {
        self.states
            .get(probe)
            .map(|s| s.open().collect())
            .unwrap_or_default()
    }

    fn save_logged(&self) {
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "alert state not saved; an open incident may re-page after a restart");
        }
    }

    /// Writes the state atomically: a temp file, fsync, rename.
    ///
    /// # Errors
    /// The state directory not being writable.
    pub fn save(&self) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(&self.states).unwrap_or_default();
        write_atomic(&self.path, &bytes).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// The part of a probe's state worth a disk write: a healthy probe changes only its last
/// success's timings and a pass count past the threshold every run, and fsyncing that for every
/// probe every minute is work without a purpose (it is still saved with the next real change).
fn durable(state: &ProbeAlertState, config: &PolicyConfig) -> ProbeAlertState {
    ProbeAlertState {
        successes: state.successes.min(config.success_threshold),
        fast: state.fast.min(config.success_threshold),
        last_success: None,
        ..state.clone()
    }
}

/// Writes `bytes` to `path` so a crash leaves the old file or the new one, never half of one.
///
/// # Errors
/// Any I/O failure on the way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
