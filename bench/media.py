"""The media path's cost (bench/media.sh): probes/examples/janus-echotest-media.toml against a
real Janus echotest, N `joincanary once` runs, and the same flow without its two `webrtc` steps
(session, attach, destroy only). Prints the median wall time of each phase of the `media` step,
and the CPU-ms of the webrtc steps: the prober's user + system time with them, minus without,
median of N. Janus and the prober share a private network namespace (veth, 10.200.0.1)."""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import harness as h

MEDIA = os.path.join(h.ROOT, "probes/examples/janus-echotest-media.toml")


def start_janus(d):
    ws, admin = h.free_port(), h.free_port()
    p = h.start(["bash", os.path.join(h.ROOT, "tests/servers/janus/start-netns.sh"),
                 str(ws), str(admin), d], stdout=subprocess.PIPE, text=True)
    # Janus prints its banner first; the script's ready line follows (or the output ends).
    for _ in range(500):
        line = p.stdout.readline()
        if not line or line.startswith("ready "):
            break
    if not line.startswith("ready "):
        sys.exit("janus did not start (no ready line)")
    return p, f"ws://127.0.0.1:{ws}/"


def without_media(text):
    """The probe without its webrtc steps and the signalling that carries their SDP."""
    blocks = re.split(r"\n(?=\[\[steps\]\])", text)
    drop = ("offer", "send-offer", "answer", "trickle", "media")
    keep = [b for b in blocks if not any(f'name = "{n}"' in b for n in drop)]
    return "\n".join(keep).replace('name = "janus-echotest-media"', 'name = "janus-signalling"')


def once(ns_pid, config, url):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(["nsenter", f"--net=/proc/{ns_pid}/ns/net", h.BIN, "once", "--config",
                        config, "--format", "json"], capture_output=True, timeout=60,
                       env=dict(os.environ, JOINCANARY_LOG="error", JANUS_URL=url))
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    run = json.loads(p.stdout)["probes"][0]
    return run, cpu_ms, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="jc-bench-media-")
    os.makedirs(os.path.join(d, "probes"))
    with open(MEDIA) as f:
        text = f.read()
    with open(os.path.join(d, "probes", "media.toml"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "probes", "signalling.toml"), "w") as f:
        f.write(without_media(text))
    configs = {}
    for which in ("media", "signalling"):
        configs[which] = os.path.join(d, f"{which}.toml")
        with open(configs[which], "w") as f:
            f.write(f'region = "bench"\nlisten = "127.0.0.1:0"\nprobes = ["probes/{which}.toml"]\n'
                    f'state_dir = "state"\n')
    janus, url = start_janus(os.path.join(d, "janus"))
    try:
        phases = {"ice": [], "dtls": [], "first_media": [], "total": []}
        gauges = {"echo_rtt_seconds": [], "echo_loss_ratio": []}
        cpu = {"media": [], "signalling": []}
        failed = 0
        for _ in range(a.runs):
            for which in ("media", "signalling"):
                run, cpu_ms, _ = once(janus.pid, configs[which], url)
                cpu[which].append(cpu_ms)
                if not run["success"]:
                    failed += 1
                    print(f"  {which} failed: {run['failed_step']} {run['reason']}: {run['error']}")
                    continue
                if which == "media":
                    step = next(s for s in run["steps"] if s["name"] == "media")
                    for k in phases:
                        phases[k].append(step["phases"][k])
                    for k in gauges:
                        gauges[k].append(step.get("gauges", {}).get(k, float("nan")))
        load = os.getloadavg()
        print(f"media path, {a.runs} runs each (load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f}; {failed} failed)")
        for k, xs in phases.items():
            if xs:
                print(f"  media step phase {k}: median {h.median(xs):.1f} ms "
                      f"(min {min(xs):.1f}, max {max(xs):.1f})")
        if gauges["echo_rtt_seconds"]:
            print(f"  echo RTT median {h.median(gauges['echo_rtt_seconds']) * 1000:.2f} ms, "
                  f"loss median {h.median(gauges['echo_loss_ratio']):.2f}")
        m, s = h.median(cpu["media"]), h.median(cpu["signalling"])
        print(f"  CPU per `once` run: {m:.0f} ms with the webrtc steps, {s:.0f} ms without "
              f"(process start and config included) -> webrtc steps {m - s:.0f} CPU-ms per run")
    finally:
        h.stop(janus)


if __name__ == "__main__":
    main()
