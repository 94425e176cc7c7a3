"""The media path's cost (bench/media.sh): the shipped Janus media probes against a real Janus,
N `joincanary once` runs of each, and each flow without its `webrtc` steps and the signalling
that carries their SDP (sessions, handles, joins and destroys only):

- probes/examples/janus-echotest-media.toml: one peer, a data channel echo (step `media`);
- probes/examples/janus-videoroom-media.toml: `a` publishes, `b` subscribes and receives a's
  messages through the videoroom (steps `a-media`, `b-media`);
- trickle: the echotest probe against a second Janus with `full_trickle = true`, whose answer
  carries no candidate: they come in trickle events that the `offer` step's tap takes (gauge
  `trickled_candidates`).

Prints the median wall time of each phase of those steps, their gauges, and the CPU-ms of the
webrtc steps: the prober's user + system time with them, minus without, median of N. Janus and
the prober share a private network namespace (veth, 10.200.0.1)."""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

import harness as h

EXAMPLES = os.path.join(h.ROOT, "probes/examples")
# name: (file, steps measured, steps dropped for the signalling-only baseline, gauges, Janus's
# full_trickle)
PROBES = {
    "echotest": ("janus-echotest-media.toml", ("media",),
                 ("offer", "send-offer", "answer", "trickle", "media"),
                 ("echo_rtt_seconds", "echo_loss_ratio", "trickled_candidates"), False),
    "trickle": ("janus-echotest-media.toml", ("media",),
                ("offer", "send-offer", "answer", "trickle", "media"),
                ("echo_rtt_seconds", "echo_loss_ratio", "trickled_candidates"), True),
    "videoroom": ("janus-videoroom-media.toml", ("a-media", "b-media"),
                  ("a-offer", "a-publish", "a-answer", "a-trickle", "a-media", "b-subscribe",
                   "b-offer", "b-answer", "b-start", "b-started", "b-media"),
                  ("media_latency_seconds", "media_loss_ratio", "media_received"), False),
}


def start_janus(d, full_trickle=False):
    ws, admin = h.free_port(), h.free_port()
    extra = ["full-trickle"] if full_trickle else []
    p = h.start(["bash", os.path.join(h.ROOT, "tests/servers/janus/start-netns.sh"),
                 str(ws), str(admin), d] + extra, stdout=subprocess.PIPE, text=True)
    # Janus prints its banner first; the script's ready line follows (or the output ends).
    for _ in range(500):
        line = p.stdout.readline()
        if not line or line.startswith("ready "):
            break
    if not line.startswith("ready "):
        sys.exit("janus did not start (no ready line)")
    return p, f"ws://127.0.0.1:{ws}/"


def without_media(text, drop):
    """The probe without its webrtc steps and the signalling that carries their SDP."""
    blocks = re.split(r"\n(?=\[\[steps\]\])", text)
    keep = [b for b in blocks if not any(f'name = "{n}"' in b for n in drop)]
    return re.sub(r'^name = "([^"]+)"', r'name = "\1-signalling"', "\n".join(keep), count=1,
                  flags=re.M)


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
    ap.add_argument("--probes", default=",".join(PROBES),
                    help="which: echotest,videoroom,trickle")
    a = ap.parse_args()
    d = h.tmpdir("jc-bench-media-")
    os.makedirs(os.path.join(d, "probes"))
    configs = {}
    wanted = [p for p in a.probes.split(",") if p]
    for name in wanted:
        file, _, drop, _, _ = PROBES[name]
        with open(os.path.join(EXAMPLES, file)) as f:
            text = f.read()
        for which, body in (("media", text), ("signalling", without_media(text, drop))):
            with open(os.path.join(d, "probes", f"{name}-{which}.toml"), "w") as f:
                f.write(body)
            configs[(name, which)] = os.path.join(d, f"{name}-{which}.toml")
            with open(configs[(name, which)], "w") as f:
                f.write(f'region = "bench"\nlisten = "127.0.0.1:0"\n'
                        f'probes = ["probes/{name}-{which}.toml"]\nstate_dir = "state"\n')
    servers = {}
    try:
        for name in wanted:
            full_trickle = PROBES[name][4]
            if full_trickle not in servers:
                which = "janus-full-trickle" if full_trickle else "janus"
                servers[full_trickle] = start_janus(os.path.join(d, which), full_trickle)
            janus, url = servers[full_trickle]
            measure(a.runs, name, janus, configs, url)
    finally:
        for janus, _ in servers.values():
            h.stop(janus)


def measure(runs, name, janus, configs, url):
    _, steps, _, gauge_names, _ = PROBES[name]
    phases = {s: {"ice": [], "dtls": [], "first_media": [], "total": []} for s in steps}
    gauges = {g: [] for g in gauge_names}
    cpu = {"media": [], "signalling": []}
    failed = 0
    for _ in range(runs):
        for which in ("media", "signalling"):
            run, cpu_ms, _ = once(janus.pid, configs[(name, which)], url)
            cpu[which].append(cpu_ms)
            if not run["success"]:
                failed += 1
                print(f"  {name} {which} failed: {run['failed_step']} {run['reason']}: "
                      f"{run['error']}")
                continue
            if which == "media":
                for step in run["steps"]:
                    if step["name"] not in phases:
                        continue
                    for k in phases[step["name"]]:
                        if k in step["phases"]:
                            phases[step["name"]][k].append(step["phases"][k])
                    for k in gauges:
                        if k in step.get("gauges", {}):
                            gauges[k].append(step["gauges"][k])
    load = os.getloadavg()
    print(f"{name}: {runs} runs each (load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; {failed} failed)")
    for step, ks in phases.items():
        for k, xs in ks.items():
            if xs:
                print(f"  step {step} phase {k}: median {h.median(xs):.1f} ms "
                      f"(min {min(xs):.1f}, max {max(xs):.1f})")
    for k, xs in gauges.items():
        if xs:
            scale, unit = (1000, " ms") if k.endswith("_seconds") else (1, "")
            print(f"  gauge {k}: median {h.median(xs) * scale:.2f}{unit} "
                  f"(min {min(xs) * scale:.2f}, max {max(xs) * scale:.2f})")
    m, s = h.median(cpu["media"]), h.median(cpu["signalling"])
    print(f"  CPU per `once` run: {m:.0f} ms with the webrtc steps, {s:.0f} ms without "
          f"(process start and config included) -> webrtc steps {m - s:.0f} CPU-ms per run")


if __name__ == "__main__":
    main()
