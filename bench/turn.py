"""The `turn` step's cost on loopback, side by side with coturn's own turnutils_uclient doing
the same allocate + echo: wall time per phase (median of the runs), CPU-ms per step (a probe
of 1 step against one of 1 + N steps, same process) and one whole `joincanary once` run
against one whole turnutils_uclient run (process wall and CPU). Everything on 127.0.0.1."""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, free_port, median, start, wait_until  # noqa: E402

USER, PASSWORD, REALM = "canary", "bench-pass-4e1", "joincanary.bench"


def start_coturn(tmp):
    port, cli = free_port(), free_port()
    log = open(os.path.join(tmp, "turnserver.log"), "w")
    p = start(
        ["turnserver", "-n", "--listening-ip", "127.0.0.1", "--listening-port", str(port),
         "--relay-ip", "127.0.0.1", "--min-port", "46000", "--max-port", "46999",
         "--allow-loopback-peers", "--no-dtls", "--no-tls", "--no-cli",
         "--lt-cred-mech", f"--user={USER}:{PASSWORD}", f"--realm={REALM}", "--fingerprint",
         "--userdb", os.path.join(tmp, "turndb"), "--pidfile", os.path.join(tmp, "pid"),
         "--log-file", "stdout", "--simple-log", "--no-software-attribute"],
        stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: subprocess.run(
        ["timeout", "1", "turnutils_stunclient", "-p", str(port), "127.0.0.1"],
        capture_output=True).returncode == 0, 10, what="turnserver")
    del cli
    return p, port


def start_peer():
    port = free_port()
    p = start(["turnutils_peer", "-L", "127.0.0.1", "-p", str(port)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    needle = "0100007F:%04X " % port
    wait_until(lambda: needle in open("/proc/net/udp").read().upper(), 5, what="turnutils_peer")
    return p, port


def config(tmp, name, url, peer_port, steps):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "probes"), exist_ok=True)
    with open(os.path.join(d, "joincanary.toml"), "w") as f:
        f.write('region = "bench"\nlisten = "127.0.0.1:0"\nprobes = ["probes"]\n'
                'state_dir = "state"\n')
    body = 'name = "turn"\nschedule = "* * * * *"\ntimeout = "50s"\n'
    for i in range(steps):
        body += (f'\n[[steps]]\nname = "relay{i}"\nkind = "turn"\nurl = "{url}"\n'
                 f'username = "{USER}"\ncredential = "${{TURN_PASSWORD}}"\n'
                 f'peer = "127.0.0.1:{peer_port}"\ntimeout = "5s"\n')
    with open(os.path.join(d, "probes", "turn.toml"), "w") as f:
        f.write(body)
    return os.path.join(d, "joincanary.toml")


def timed(args, env=None):
    """Runs `args`; returns (wall ms, CPU ms of the process, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    wall = (time.monotonic() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    return wall, cpu, out


def once(cfg):
    env = dict(os.environ, TURN_PASSWORD=PASSWORD)
    wall, cpu, out = timed([BIN, "once", "--config", cfg, "--format", "json",
                            "--log.level", "warn"], env)
    if out.returncode != 0:
        raise SystemExit(f"joincanary once failed:\n{out.stdout}\n{out.stderr}")
    return wall, cpu, json.loads(out.stdout)["probes"][0]


def uclient(port, peer_port):
    wall, cpu, out = timed(["turnutils_uclient", "-c", "-n", "1", "-m", "1", "-l", "64",
                            "-u", USER, "-w", PASSWORD, "-p", str(port),
                            "-e", "127.0.0.1", "-r", str(peer_port), "127.0.0.1"])
    if out.returncode != 0 or "tot_recv_msgs=1" not in out.stdout:
        raise SystemExit(f"turnutils_uclient failed:\n{out.stdout}\n{out.stderr}")
    return wall, cpu


def fmt(x):
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15, help="runs per median")
    ap.add_argument("--steps", type=int, default=100, help="extra steps in the CPU probe")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="joincanary-turn-bench-")
    _, port = start_coturn(tmp)
    _, peer_port = start_peer()
    print(f"# load average before: {open('/proc/loadavg').read().split()[:3]}")
    print(f"# {args.runs} runs per median; CPU per step = (CPU of 1+{args.steps} steps - CPU "
          f"of 1 step) / {args.steps}, median of 3")
    for transport, url in [("udp", f"turn:127.0.0.1:{port}"),
                           ("tcp", f"turn:127.0.0.1:{port}?transport=tcp")]:
        one = config(tmp, f"one-{transport}", url, peer_port, 1)
        many = config(tmp, f"many-{transport}", url, peer_port, 1 + args.steps)
        phases, walls, cpus = {}, [], []
        for _ in range(args.runs):
            wall, cpu, probe = once(one)
            walls.append(wall)
            cpus.append(cpu)
            for name, ms in probe["steps"][0]["phases"].items():
                phases.setdefault(name, []).append(ms)
        per_step = []
        for _ in range(3):
            _, c1, _ = once(one)
            _, cn, _ = once(many)
            per_step.append((cn - c1) / args.steps)
        print(f"\n## joincanary turn step over {transport}")
        print("phase (median wall ms): " + ", ".join(
            f"{k} {fmt(median(v))}" for k, v in sorted(phases.items(), key=lambda kv: kv[0])))
        print(f"CPU per step: {fmt(median(per_step))} ms")
        print(f"whole `once` process (1 step): wall {fmt(median(walls))} ms, "
              f"CPU {fmt(median(cpus))} ms")
    walls, cpus = [], []
    for _ in range(args.runs):
        wall, cpu = uclient(port, peer_port)
        walls.append(wall)
        cpus.append(cpu)
    print("\n## turnutils_uclient -c -n 1 -m 1 (UDP: allocate, permission, one echo; "
          "no refresh(0))")
    print(f"whole process: wall {fmt(median(walls))} ms, CPU {fmt(median(cpus))} ms")
    print(f"\n# load average after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
