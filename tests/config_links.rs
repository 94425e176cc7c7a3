//! Links in a config that the status page, the fleet view and pages publish (`status_url`,
//! `dashboard_url`, `peers`): refused at their key when they carry a credential or are no base
//! URL, never repeating the value.

use crate::support::TempConfig;

/// A fresh hostile round (issue 17): `status_url` and `dashboard_url` are links for people,
/// published on the status page, in `/api/v1/status` (no login) and in every page. One written
/// with `user:password@` or a token in its query published the credential; now `check`
/// refuses it at its key, never repeating the value.
#[test]
fn a_link_for_people_carrying_credentials_is_refused() {
    let probes = [(
        "p.toml",
        "[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n",
    )];
    for (line, key) in [
        (
            "status_url = \"https://admin:Hunter2pw@status.example/eu\"",
            "status_url",
        ),
        (
            "dashboard_url = \"https://grafana.example/d/x?orgId=1&auth_token=GrafTok99\"",
            "dashboard_url",
        ),
    ] {
        let cfg = TempConfig::new(&format!("{line}\n"), &probes);
        let err = cfg.load(&[]).unwrap_err().to_string();
        assert!(
            err.contains("joincanary.toml:5:")
                && err.contains(&format!(": {key}: carries credentials")),
            "{err}"
        );
        assert!(
            !err.contains("Hunter2pw") && !err.contains("GrafTok99"),
            "{err}"
        );
    }
    // A link without credentials is taken as written.
    let cfg = TempConfig::new(
        "status_url = \"https://status.example/eu\"\ndashboard_url = \"https://grafana.example/d/x?orgId=1&var-region=eu\"\n",
        &probes,
    );
    let plan = cfg.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.dashboard_url.as_deref(),
        Some("https://grafana.example/d/x?orgId=1&var-region=eu")
    );
}

/// A fresh hostile round (issue 17): a peer's base URL with a query (`?token=…`) was taken;
/// `/api/v1/status` appended to it went into the query, so the peer was never read, and the
/// fleet page showed the URL, token and all. Now it is refused as no base URL.
#[test]
fn a_peer_url_with_a_query_is_refused() {
    let cfg = TempConfig::new(
        "peers = [\"http://prober-us:9464/?token=PeerTok99\"]\n",
        &[],
    );
    let err = cfg.load(&[]).unwrap_err().to_string();
    assert!(
        err.contains("peers[0]: must be a prober's base URL like http://prober-us:9464"),
        "{err}"
    );
    assert!(!err.contains("PeerTok99"), "{err}");
}
