//! Hostile websocket servers below the message level (issue 17): endless empty continuation
//! frames, endless pings, a message in 1-byte fragments, a frame claiming 2^63 bytes. Each
//! fails fast with a reason that names it, and the prober stops reading.

use joincanary::report::{FailureReason, ProbeRun};

use crate::support::hostile::{Poured, ws_server};
use crate::support::{probe_from, run_once};

/// A websocket server that, once upgraded, writes `head` raw (unmasked server frames) and then
/// `filler` over and over, up to `limit` bytes or until the prober hangs up.
async fn raw_frames(head: &'static [u8], filler: &'static [u8], limit: usize) -> (String, Poured) {
    let poured = Poured::default();
    let p = poured.clone();
    let addr = ws_server(move |mut ws| {
        let p = p.clone();
        async move {
            p.pour(ws.get_mut(), head, filler, limit).await;
        }
    })
    .await;
    (addr, poured)
}

/// The join flow against `addr` with `max_body_bytes = 64 KiB`, the expect step 20 s (the
/// holes ran until it ended): a fast failure is the cap's, not the deadline's.
async fn run(addr: &str) -> ProbeRun {
    let text = crate::support::ws_join_probe(
        addr,
        "timeout = \"30s\"\nmax_body_bytes = 65536",
        "timeout = \"20s\"",
    );
    run_once(&probe_from(&text, &[])).await
}

const MIB: usize = 1 << 20;

/// A text message begun and never finished: empty continuation frames, two bytes each. Before,
/// the prober parsed them until the step's deadline and the run failed `no_match`.
#[tokio::test]
async fn endless_empty_continuation_frames_are_a_protocol_failure() {
    let (addr, poured) = raw_frames(&[0x01, 0x00], &[0x00, 0x00], 512 * MIB).await;
    let run = run(&addr).await;
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("fragments"), "names the fragments: {error}");
    assert!(poured.total().await < 64 * MIB, "the read stopped");
}

/// A message sent one byte per fragment: bounded by fragments, not only by its size.
#[tokio::test]
async fn a_message_in_one_byte_fragments_is_a_protocol_failure() {
    let (addr, _) = raw_frames(b"\x01\x01{", b"\x00\x01 ", 512 * MIB).await;
    let run = run(&addr).await;
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("fragments"), "names the fragments: {error}");
}

/// Endless pings (each answered by a pong): the step's frame count, not its deadline, ends it.
#[tokio::test]
async fn endless_pings_are_a_protocol_failure() {
    let (addr, poured) = raw_frames(b"", &[0x89, 0x00], 512 * MIB).await;
    let run = run(&addr).await;
    assert_eq!(run.reason, Some(FailureReason::Protocol), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("frames"), "names the frames: {error}");
    assert!(poured.total().await < 64 * MIB, "the read stopped");
}

/// Non-matching messages of just under the cap, without end: the step's byte budget ends the
/// read (each frame alone is allowed), reason `too_large`. The 64 MiB take 2 s on a quiet
/// machine; one loaded to 29 had read 63 MiB when a 40 s step ran out, so the step has 120 s
/// (its deadline ends a run whose budget does not, as `no_match`), the probe run every 5 min.
#[tokio::test]
async fn endless_large_frames_exhaust_the_step_byte_budget() {
    // A 60 000-byte text frame: 0x81, 126, length as u16, then the payload.
    const FRAME: &[u8] = &{
        let mut f = [b'x'; 60_004];
        f[0] = 0x81;
        f[1] = 126;
        f[2] = (60_000u16 >> 8) as u8;
        f[3] = (60_000u16 & 0xff) as u8;
        f
    };
    let (addr, poured) = raw_frames(b"", FRAME, 2048 * MIB).await;
    let text = crate::support::ws_join_probe(
        &addr,
        "schedule = \"*/5 * * * *\"\ntimeout = \"130s\"\nmax_body_bytes = 65536",
        "timeout = \"120s\"\nmax_frames = 1000000",
    );
    let run = run_once(&probe_from(&text, &[])).await;
    assert_eq!(run.reason, Some(FailureReason::TooLarge), "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("bytes in one step"),
        "names the budget: {error}"
    );
    assert!(poured.total().await < 256 * MIB, "the read stopped");
}

/// A frame header claiming 2^63 - 1 bytes (and one with the top bit set, which RFC 6455
/// forbids): refused on the header, nothing allocated for it.
#[tokio::test]
async fn a_frame_claiming_2_pow_63_bytes_is_refused_on_its_header() {
    for head in [
        b"\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"\x81\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
    ] {
        let (addr, _) = raw_frames(head, b"x", 4 * MIB).await;
        let run = run(&addr).await;
        assert!(
            matches!(
                run.reason,
                Some(FailureReason::TooLarge | FailureReason::Protocol)
            ),
            "{run:#?}"
        );
        assert!(
            run.duration_ms < std::time::Duration::from_secs(10),
            "not the deadline: {run:#?}"
        );
    }
}
