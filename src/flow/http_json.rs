//! The `http_json` step: an `http` request whose JSON numbers become gauges, each checked
//! against `warn_above` / `warn_below` (a crossing is a warning, never a failure).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::context::RunContext;
use super::error::StepError;
use super::http::{HttpSpec, RawHttp};
use super::kind::{Build, Kind, Reads};
use super::parts::{self, ExtractSource, Extraction, GaugeChecks, RawGauges};
use crate::diag::{S, table_keys, valid_label};
use crate::report::FailureReason;

/// An `http_json` step's own key; it takes every key of an `http` step and the thresholds
/// ([`RawGauges`]) too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpJson {
    /// Gauge name -> JSON pointer (or dotted path) of a number in the reply.
    pub gauges: Option<S<BTreeMap<String, S<String>>>>,
}

/// An `http_json` step: an `http` request whose JSON numbers become gauges.
#[derive(Debug, Clone)]
pub struct HttpJsonSpec {
    /// The request; its `extract` also carries one extraction per gauge.
    pub http: HttpSpec,
    /// Gauge name -> JSON pointer.
    pub gauges: Vec<(String, String)>,
    pub checks: GaugeChecks,
}

impl Kind for HttpJsonSpec {
    type Raw = RawHttpJson;

    fn keys() -> Vec<&'static str> {
        [
            table_keys::<RawHttp>(),
            table_keys::<RawHttpJson>(),
            table_keys::<RawGauges>(),
        ]
        .concat()
    }

    fn build(s: RawHttpJson, b: &mut Build<'_, '_, '_>) -> Option<HttpJsonSpec> {
        let mut http = HttpSpec::build(b.read::<RawHttp>()?, b)?;
        let mut gauges = Vec::new();
        for (name, path) in s
            .gauges
            .as_ref()
            .map(|g| g.get_ref().iter())
            .into_iter()
            .flatten()
        {
            let k = b.key(&format!("gauges.{name}"));
            if !valid_label(name) {
                b.ctx.error(
                    Some(path.span()),
                    &k,
                    "a gauge name must be letters, digits, `-`, `_` or `.`",
                );
                continue;
            }
            match parts::json_pointer(path.get_ref()) {
                Ok(p) => {
                    http.extract.push(Extraction {
                        var: gauge_var(name),
                        source: ExtractSource::Json(p.clone()),
                        within: None,
                    });
                    gauges.push((name.clone(), p));
                }
                Err(msg) => b.ctx.error(Some(path.span()), &k, msg),
            }
        }
        // Gauges written but each refused above: that is the error, not their absence.
        if gauges.is_empty() && s.gauges.as_ref().is_none_or(|g| g.get_ref().is_empty()) {
            b.ctx.error(
                Some(b.name.clone()),
                b.key("gauges"),
                "an http_json step needs `gauges` (name = JSON pointer of a number)",
            );
            return None;
        }
        if gauges.is_empty() {
            return None;
        }
        let names: Vec<&str> = gauges.iter().map(|(n, _)| n.as_str()).collect();
        let known = |name: &str| names.contains(&name);
        let thresholds = b.read::<RawGauges>()?;
        let checks = parts::gauge_checks(b.ctx, &thresholds, &b.prefix, &known, &names.join(", "))?;
        Some(HttpJsonSpec {
            http,
            gauges,
            checks,
        })
    }

    fn reads<'s>(&'s self, r: &mut Reads<'s>) {
        self.http.reads(r);
    }

    fn extracts(&self) -> &[Extraction] {
        &self.http.extract
    }

    fn waiting(&self, ctx: &RunContext<'_>) -> &'static str {
        self.http.waiting(ctx)
    }

    /// The request as an `http` step makes it, its JSON values extracted into gauges, then
    /// the thresholds.
    async fn run(&self, ctx: &mut RunContext<'_>, _: &str) -> Result<(), StepError> {
        super::http::run(ctx, &self.http, "").await?;
        for (name, _) in &self.gauges {
            let var = gauge_var(name);
            let text = ctx.vars.get(&var).cloned().unwrap_or_default();
            let value = text.trim().parse::<f64>();
            // `NaN`, `inf` and `1e999` parse, but no reader of the status takes them.
            let value = value.ok().filter(|v| v.is_finite()).ok_or_else(|| {
                StepError::new(
                    FailureReason::BodyMismatch,
                    format!(
                        "gauge `{name}`: `{}` is not a number",
                        crate::redact::quote(&text, 40)
                    ),
                )
            })?;
            ctx.gauge(name.clone(), value);
        }
        self.checks.warn(ctx);
        Ok(())
    }
}

/// The variable an `http_json` gauge is extracted into (not a valid template name, so no
/// template can collide with it).
pub fn gauge_var(name: &str) -> String {
    format!("gauge:{name}")
}
