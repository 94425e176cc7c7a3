//! Credentials written into a probe file as they are (`Authorization = "Bearer …"`,
//! `?access_token=…`), not through `${ENV}`: a server echoing its request in a refusal
//! (`invalid token … for /api?access_token=…`, as many do) put them in the run's error, and so
//! in the status, logs and pages. A pager's literal key was already a secret; a probe's are now.

use axum::http::{HeaderMap, StatusCode, Uri};

use super::leak;
use crate::support::{self, probe_from, run_once};

/// Answers every request (an upgrade too) 401, echoing its URI and the headers that carry
/// credentials.
async fn echoing_refusal() -> String {
    async fn refuse(uri: Uri, headers: HeaderMap) -> (StatusCode, String) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            StatusCode::UNAUTHORIZED,
            format!(
                "invalid credentials `{}` / `{}` / `{}` for {uri}",
                header("authorization"),
                header("x-api-key"),
                header("cookie"),
            ),
        )
    }
    support::init();
    support::serve_router(axum::Router::new().fallback(refuse)).await
}

/// Literal values in the query and the headers of an `http` step and a `ws_connect` step.
#[tokio::test]
async fn literal_credentials_echoed_by_a_server_are_scrubbed() {
    let addr = echoing_refusal().await;
    let secrets = [
        "LitQueryToken42",
        "LitBearerToken42",
        "LitApiKey42",
        "LitCookie42",
        "LitWsToken42",
    ];
    for step in [
        format!(
            "kind = \"http\"\nurl = \"http://{addr}/api?room=lobby&access_token=LitQueryToken42\"\n\
             headers = {{ Authorization = \"Bearer LitBearerToken42\", X-Api-Key = \"LitApiKey42\", Cookie = \"sess=LitCookie42\" }}"
        ),
        format!(
            "kind = \"ws_connect\"\nurl = \"ws://{addr}/ws?room=lobby&token=LitWsToken42\"\n\
             headers = {{ Authorization = \"Bearer LitBearerToken42\" }}"
        ),
    ] {
        let plan = probe_from(
            &format!("timeout = \"5s\"\n[[steps]]\nname = \"join\"\n{step}\n"),
            &[],
        );
        let run = run_once(&plan).await;
        let out = serde_json::to_string(&run).unwrap();
        assert!(!run.success, "{out}");
        assert!(out.contains("invalid credentials"), "{out}");
        // What names no credential stays readable.
        assert!(out.contains("room=lobby"), "{out}");
        for secret in secrets {
            assert_eq!(leak(&out, secret), None, "{secret} leaked: {out}");
        }
    }
}
