//! Paging on-call: the policy that decides, and the notifiers that deliver.

pub mod policy;

use crate::config::Ctx;
use crate::config::raw::{RawPager, S};

/// One configured pager (filled in by the alerting work).
#[derive(Debug, Clone)]
pub struct PagerPlan {
    pub name: String,
}

pub(crate) fn build_pagers(ctx: &mut Ctx<'_>, raw: &[S<RawPager>]) -> Vec<PagerPlan> {
    for p in raw {
        ctx.error(
            Some(p.span()),
            "pager",
            "pagers are not supported by this build yet",
        );
    }
    Vec::new()
}
