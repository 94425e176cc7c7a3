//! The service config's errors (`joincanary.toml`): its own keys, `[defaults]`, `[alerting]`,
//! each `[[pager]]` type and each `[[heartbeat]]` type. `TempConfig` writes four lines first
//! (region, listen, probes, state_dir); a case's text starts on line 5.

use super::{Case, PROBE, check, service};

/// A case whose service config is `text` alone (no lines written before it).
fn whole(text: &str, key: &'static str, says: &'static str) -> Case {
    let mut c = service(text, key, says);
    c.whole = true;
    c
}

#[test]
fn every_service_config_error_names_file_line_column_and_key() {
    let pager = |t: &str, rest: &str| format!("[[pager]]\nname = \"p\"\ntype = \"{t}\"\n{rest}");
    let hb = |t: &str, rest: &str| format!("[[heartbeat]]\nname = \"h\"\ntype = \"{t}\"\n{rest}");
    let mut cases = vec![
        service("‸colour = \"red\"\n", "colour", "unknown field `colour`"),
        service("‸= 1\n", "", ""),
        whole(
            "‸region = \"r\"\n",
            "probes",
            "missing field `probes`: list the probe files or directories to run, `probes = [\"probes/\"]`",
        ),
        whole(
            "listen = ‸\"nope\"\nprobes = [\"probes\"]\n",
            "listen",
            "`nope` is not an address like 127.0.0.1:9464",
        ),
        whole(
            "region = ‸\"\"\nprobes = [\"probes\"]\n",
            "region",
            "must be a non-empty label",
        ),
        whole("probes = ‸[]\n", "probes", "names no probe files"),
        whole(
            "probes = [‸\"nowhere\"]\n",
            "probes",
            "nowhere` does not exist",
        ),
        whole(
            "probes = ‸[\"probes\"]\n",
            "probes",
            "found no probe files (`*.toml`); a prober with zero probes can never page",
        )
        .without_probes(),
        whole(
            "probes = [\"probes/p.toml\"]\nstatus_url = ‸\"${JC_UNSET_STATUS}\"\n",
            "status_url",
            "environment variable `JC_UNSET_STATUS` is not set",
        ),
        service(
            "dashboard_url = ‸\"https://u:pw@grafana.example/d/1\"\n",
            "dashboard_url",
            "carries credentials",
        ),
        service("peers = [‸5]\n", "peers[0]", "must be a string"),
        service(
            "peers = [{ url = \"http://p:9464\", colour = ‸1 }]\n",
            "peers[0].colour",
            "unknown key (a peer has `url`, `region` and `tls_config`)",
        ),
        service(
            "peers = [{ url = \"https://p:9464\", tls_config = { ca = ‸\"x\" } }]\n",
            "peers[0].tls_config.ca",
            "unknown key, expected one of `ca_file`, `cert_file`, `key_file`, `server_name`",
        ),
        service(
            "peers = [{ url = \"https://p:9464\", tls_config = { ca_file = ‸\"missing.pem\" } }]\n",
            "peers[0].tls_config.ca_file",
            "cannot read `missing.pem`",
        ),
        service(
            "peers = [{ url = \"https://p:9464\", tls_config = { key_file = ‸\"k.pem\" } }]\n",
            "peers[0].tls_config.key_file",
            "`cert_file` and `key_file` go together",
        ),
        service(
            "peers = [‸{ region = \"r\" }]\n",
            "peers[0].url",
            "is required",
        ),
        service(
            "peers = [{ url = ‸5 }]\n",
            "peers[0].url",
            "must be a string",
        ),
        service(
            "peers = [{ url = \"http://p:9464\", region = ‸\"\" }]\n",
            "peers[0].region",
            "must be a non-empty label",
        ),
        service(
            "peers = [\"http://p:9464\", ‸\"http://p:9464/\"]\n",
            "peers[1]",
            "listed twice",
        ),
        service(
            "peers = [‸\"http://p:9464/?token=x\"]\n",
            "peers[0]",
            "must be a prober's base URL",
        ),
        whole(
            "listen = ‸\"${JC_UNSET_LISTEN}\"\nprobes = [\"probes\"]\n",
            "listen",
            "`JC_UNSET_LISTEN` is not set",
        ),
        // [defaults]
        service(
            "[defaults]\n‸wat = 1\n",
            "defaults.wat",
            "unknown field `wat`",
        ),
        service(
            "[defaults]\ntimezone = ‸\"Mars/Base\"\n",
            "defaults.timezone",
            "`Mars/Base` is not an IANA time zone",
        ),
        service(
            "[defaults]\nschedule = ‸\"* *\"\n",
            "defaults.schedule",
            "has 2 fields",
        ),
        service(
            "[defaults]\ntimeout = ‸\"soon\"\n",
            "defaults.timeout",
            "`soon` is not a duration",
        ),
        service(
            "[defaults]\ntimeout = ‸\"0s\"\n",
            "defaults.timeout",
            "must be greater than zero",
        ),
        service(
            "[defaults]\nstep_timeout = ‸\"2years\"\n",
            "defaults.step_timeout",
            "must be between 1ns and 1year",
        ),
        service(
            "[defaults]\njitter = ‸5\n",
            "defaults.jitter",
            "expected a duration in quotes",
        ),
        service(
            "[defaults]\nmax_body_bytes = ‸0\n",
            "defaults.max_body_bytes",
            "must be a whole number from 1 to 67108864",
        ),
        service(
            "[defaults]\nmax_frames = ‸0\n",
            "defaults.max_frames",
            "must be a whole number greater than zero",
        ),
        // [alerting]
        service(
            "[alerting]\n‸wat = 1\n",
            "alerting.wat",
            "unknown field `wat`",
        ),
        service(
            "[alerting]\npagers = ‸[\"nobody\"]\n",
            "alerting.pagers",
            "no [[pager]] is named `nobody` (configured: none)",
        ),
        service(
            "[alerting]\nfailure_threshold = ‸0\n",
            "alerting.failure_threshold",
            "must be a whole number from 1 to",
        ),
        service(
            "[alerting]\nconfirm_delay = ‸\"x\"\n",
            "alerting.confirm_delay",
            "is not a duration",
        ),
        service(
            "[alerting]\nreminder_interval = ‸\"0s\"\n",
            "alerting.reminder_interval",
            "must be greater than zero",
        ),
        service(
            "[alerting]\ngroup_key = ‸\"${JC_UNSET_GROUP}\"\n",
            "alerting.group_key",
            "`JC_UNSET_GROUP` is not set",
        ),
        service(
            "[alerting.budgets]\na = ‸\"fast\"\n",
            "alerting.budgets.a",
            "`fast` is not a duration",
        ),
        service(
            "[[alerting.maintenance]]\nstart = ‸\"61 * * * *\"\nduration = \"1h\"\n",
            "alerting.maintenance[0].start",
            "the minute field `61` is not valid",
        ),
        service(
            "[[alerting.maintenance]]\nstart = \"0 3 * * *\"\nduration = ‸\"long\"\n",
            "alerting.maintenance[0].duration",
            "`long` is not a duration",
        ),
        service(
            "[[alerting.maintenance]]\nstart = \"0 3 * * *\"\nduration = \"1h\"\ntimezone = ‸\"Nowhere\"\n",
            "alerting.maintenance[0].timezone",
            "is not an IANA time zone",
        ),
        service(
            "‸[[alerting.maintenance]]\nduration = \"1h\"\n",
            "alerting.maintenance[0].start",
            "missing field `start`",
        ),
        // [[pager]], every type
        service(
            "‸[[pager]]\ntype = \"webhook\"\nurl = \"http://h.example/\"\n",
            "pager[0].name",
            "missing field `name`",
        ),
        service(
            "‸[[pager]]\nname = \"p\"\n",
            "pager[0].type",
            "missing field `type`",
        ),
        service(
            "[[pager]]\nname = ‸\"\"\ntype = \"webhook\"\nurl = \"http://h.example/\"\n",
            "pager[0].name",
            "must be a non-empty label",
        ),
        service(
            &format!(
                "{}[[pager]]\nname = ‸\"p\"\ntype = \"webhook\"\nurl = \"http://h.example/\"\n",
                pager("webhook", "url = \"http://h.example/\"\n")
            ),
            "pager[1].name",
            "another pager is already named `p`",
        ),
        service(
            "[[pager]]\nname = \"p\"\ntype = ‸\"webhok\"\n",
            "pager[0].type",
            "unknown pager type `webhok` (did you mean `webhook`?)",
        ),
        service(
            &pager("slack", "url = \"http://h.example/\"\ncolour = ‸\"red\"\n"),
            "pager[0].colour",
            "does not apply to a `slack` pager, expected one of",
        ),
        service(
            &format!("‸{}", pager("webhook", "")),
            "pager[0].url",
            "is required for a `webhook` pager",
        ),
        service(
            &pager("webhook", "url = ‸\" \"\n"),
            "pager[0].url",
            "must not be empty",
        ),
        service(
            &pager("webhook", "url = ‸\"ftp://h.example/\"\n"),
            "pager[0].url",
            "is not an http:// or https:// URL",
        ),
        service(
            &pager(
                "webhook",
                "url = \"http://h.example/\"\nheaders = { \"a b\" = ‸\"x\" }\n",
            ),
            "pager[0].headers.a b",
            "is not a valid header name",
        ),
        service(
            &pager(
                "webhook",
                "url = \"http://h.example/\"\nheaders = { a = ‸\"${JC_TEST_CRLF}\" }\n",
            ),
            "pager[0].headers.a",
            "has a value that cannot be sent",
        )
        .with_env(&[("JC_TEST_CRLF", "x\r\ny: 1")]),
        service(
            &format!("‸{}", pager("pagerduty", "")),
            "pager[0].routing_key",
            "is required for a `pagerduty` pager",
        ),
        service(
            &pager("opsgenie", "api_key = \"k\"\nregion = ‸\"mars\"\n"),
            "pager[0].region",
            "unknown Opsgenie region `mars`",
        ),
        service(
            &pager("opsgenie", "api_key = \"k\"\npriority = ‸\"P9\"\n"),
            "pager[0].priority",
            "`P9` is not an Opsgenie priority",
        ),
        service(
            &pager(
                "email",
                EMAIL
                    .replace("tls = \"starttls\"", "tls = ‸\"ssl\"")
                    .as_str(),
            ),
            "pager[0].tls",
            "unknown tls mode `ssl`",
        ),
        service(
            &pager("email", &format!("{EMAIL}port = ‸0\n")),
            "pager[0].port",
            "must be a port from 1 to 65535",
        ),
        service(
            &format!("‸{}", pager("email", &format!("{EMAIL}username = \"u\"\n"))),
            "pager[0].password",
            "`username` and `password` go together",
        ),
        service(
            &pager(
                "email",
                EMAIL
                    .replace("to = [\"o@", "to = [‸\"not an address, o@")
                    .as_str(),
            ),
            "pager[0].to[0]",
            "is not an email address",
        ),
        service(
            &format!(
                "‸{}",
                pager("email", "host = \"127.0.0.1\"\nto = [\"o@example.com\"]\n")
            ),
            "pager[0].from",
            "is required for an `email` pager",
        ),
        service(
            &pager(
                "email",
                "host = \"127.0.0.1\"\nfrom = \"a@example.com\"\nto = ‸[]\n",
            ),
            "pager[0].to",
            "a list of at least one address",
        ),
        service(
            &pager(
                "alertmanager",
                "url = \"http://am:9093\"\nresend_interval = \"1m\"\nhold = ‸\"1m\"\n",
            ),
            "pager[0].hold",
            "must be longer than resend_interval",
        ),
        service(
            &pager(
                "alertmanager",
                "url = \"http://am:9093\"\nurls = ‸[\"http://am2:9093\"]\n",
            ),
            "pager[0].urls",
            "give `url` (one Alertmanager) or `urls`",
        ),
        service(
            &pager("alertmanager", "urls = ‸[]\n"),
            "pager[0].urls",
            "must list 1 to 10",
        ),
        service(
            &format!("‸{}", pager("alertmanager", "")),
            "pager[0].url",
            "is required for an `alertmanager` pager",
        ),
        service(
            &pager(
                "alertmanager",
                "urls = [\"http://am:9093\", ‸\"http://am:9093\"]\n",
            ),
            "pager[0].urls[1]",
            "lists the same Alertmanager twice",
        ),
        service(
            &pager("alertmanager", "urls = [‸\"ftp://am:9093\"]\n"),
            "pager[0].urls[0]",
            "is not an http:// or https:// URL",
        ),
        // [[heartbeat]], both types
        service(
            &hb("http", "url = \"http://hc.example/\"\n‸every = \"1m\"\n"),
            "heartbeat[0].every",
            "unknown field `every`",
        ),
        service(
            &hb("http", "url = \"http://hc.example/\"\napi_key = ‸\"k\"\n"),
            "heartbeat[0].api_key",
            "does not apply to an `http` heartbeat",
        ),
        service(
            "‸[[heartbeat]]\ntype = \"http\"\nurl = \"http://hc.example/\"\n",
            "heartbeat[0].name",
            "missing field `name`",
        ),
        service(
            "[[heartbeat]]\nname = ‸\"a b\"\ntype = \"http\"\nurl = \"http://hc.example/\"\n",
            "heartbeat[0].name",
            "must be letters, digits",
        ),
        service(
            &format!(
                "{}[[heartbeat]]\nname = ‸\"h\"\ntype = \"http\"\nurl = \"http://hc.example/\"\n",
                hb("http", "url = \"http://hc.example/\"\n")
            ),
            "heartbeat[1].name",
            "another heartbeat is named `h`",
        ),
        service(
            &hb(
                "http",
                "url = \"http://hc.example/\"\ninterval = \"1m\"\ntimeout = ‸\"1m\"\n",
            ),
            "heartbeat[0].timeout",
            "must be shorter than the interval",
        ),
        service(
            &hb("http", "url = \"http://hc.example/\"\ninterval = ‸\"5s\"\n"),
            "heartbeat[0].interval",
            "must be longer than the timeout (10s, the default)",
        ),
        service(
            "[[heartbeat]]\nname = \"h\"\ntype = ‸\"htp\"\n",
            "heartbeat[0].type",
            "unknown heartbeat type `htp` (did you mean `http`?)",
        ),
        service(
            &format!("‸{}", hb("http", "")),
            "heartbeat[0].url",
            "is required",
        ),
        service(
            &hb("http", "url = ‸\"not a url\"\n"),
            "heartbeat[0].url",
            "is not an http:// or https:// URL",
        ),
        service(
            &hb("http", "url = \"http://hc.example/\"\nmethod = ‸\"PUT\"\n"),
            "heartbeat[0].method",
            "must be `GET` or `POST`",
        ),
        service(
            &hb("opsgenie", "api_key = \"k\"\nregion = ‸\"mars\"\n"),
            "heartbeat[0].region",
            "must be `us` or `eu`",
        ),
        service(
            &hb("opsgenie", "api_key = ‸\" \"\n"),
            "heartbeat[0].api_key",
            "is empty",
        ),
        service(
            &format!("‸{}", hb("opsgenie", "")),
            "heartbeat[0].api_key",
            "is required for an `opsgenie` heartbeat",
        ),
    ];
    // Both from [defaults]: the probe has no place for it; the message names the service
    // config's.
    let mut defaults_deadline = service(
        "[defaults]\ntimeout = \"90s\"\n",
        "timeout",
        "(1m 30s from [defaults] at joincanary.toml:6:11)",
    );
    defaults_deadline.probes = vec![("p.toml", format!("‸{}", &PROBE[15..]))];
    cases.push(defaults_deadline);
    // A service budget for a step this probe lacks: placed at the probe, naming the budget.
    let mut budget = service(
        "[alerting.budgets]\n\"sig.round_trip\" = \"1s\"\n",
        "alerting.budgets",
        "the service config's [alerting.budgets] (joincanary.toml:6:20) names step `sig`",
    );
    budget.probes = vec![("p.toml", format!("‸{PROBE}"))];
    cases.push(budget);
    check(cases);
}

/// An email pager's required keys, `tls` written so a case can replace it.
const EMAIL: &str = "host = \"127.0.0.1\"\ntls = \"starttls\"\nfrom = \"a@example.com\"\nto = [\"o@example.com\"]\n";
