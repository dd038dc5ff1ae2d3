#!/usr/bin/env python3
"""sipdisp's memory and reload cost with 4, 1,000 and 10,000 destinations (issues 7 and 13).

    python3 bench/scale.py [--probing]   (after bench/run.sh built target/release/sipdisp{,-load})

For each size: a list file of N destinations in set 1 (127.x.y.z:5060, loopback only, nothing
listens there), sipdisp with one io_uring worker and a round-robin route; VmRSS after start,
then 2 s of INVITEs at 10,000/s (each forwarded to the next destination; the datagrams die
at the closed ports), then VmRSS and VmHWM, then three `dispatcher.reload` calls over the
admin API (the time each RPC takes: parse, build, carry state over, swap). With --probing,
OPTIONS keepalives to every destination (ds_ping_interval 10 s, ds_probing_mode 1) and
latency statistics are on: the prober's table and the per-destination metric series count.
Prints a Markdown table. Stops what it started.
"""

import os
import signal
import subprocess
import sys
import json
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (same directory: process helpers and paths)


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, run.on_signal)
    probing = "--probing" in sys.argv[1:]
    extra = ("ds_ping_interval = 10\nds_probing_mode = 1\nds_ping_latency_stats = 1\n"
             if probing else "")
    rows = []
    work = tempfile.mkdtemp(prefix="sipdisp-scale-")
    try:
        for n in (4, 1000, 10000):
            with open(os.path.join(work, "dispatcher.list"), "w") as f:
                for i in range(1, n + 1):
                    f.write(f"1 sip:127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:5060\n")
            port = run.free_port()
            admin = run.free_port()
            cfg = os.path.join(work, "s.toml")
            with open(cfg, "w") as f:
                f.write(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nworkers = 1\ndatapath = "io_uring"\n'
                        f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
                        f'[dispatcher]\nlist_file = "dispatcher.list"\nreload_delta = 0\n{extra}'
                        f'[[route]]\nselect = "1=4"\n')
            log = open(os.path.join(work, f"{n}.log"), "w")
            p = run.start([run.SIPDISP, "run", "--config", cfg], log)
            try:
                time.sleep(1.0)
                if p.poll() is not None:
                    raise RuntimeError(f"sipdisp exited: {open(log.name).read()}")
                idle = status_kb(p.pid, "VmRSS")
                out = run.send(f"127.0.0.1:{port}", "--rate", 10000, "--seconds", 2, "--drain-ms", 100)
                busy, hwm = status_kb(p.pid, "VmRSS"), status_kb(p.pid, "VmHWM")
                reloads = []
                for _ in range(3):
                    body = json.dumps({"jsonrpc": "2.0", "method": "dispatcher.reload", "id": 1}).encode()
                    req = urllib.request.Request(f"http://127.0.0.1:{admin}/RPC", data=body, method="POST")
                    t0 = time.monotonic()
                    with urllib.request.urlopen(req, timeout=30) as r:
                        r.read()
                    reloads.append((time.monotonic() - t0) * 1000)
                rows.append((n, idle, busy, hwm, out["sent"], sorted(reloads)[1]))
            finally:
                run.stop(p)
                log.close()
    finally:
        run.stop_all()
    print("| destinations | VmRSS idle MiB | VmRSS after 20,000 INVITEs MiB | VmHWM MiB | reload (median of 3) ms |")
    print("|---|---|---|---|---|")
    for n, idle, busy, hwm, _, rl in rows:
        print(f"| {n:,} | {idle / 1024:.1f} | {busy / 1024:.1f} | {hwm / 1024:.1f} | {rl:.1f} |")
    if len(rows) >= 2:
        (n0, i0, *_), (n1, i1, *_) = rows[0], rows[-1]
        print(f"\nper destination (idle, {n1:,} vs {n0}): {(i1 - i0) * 1024 / (n1 - n0):.0f} bytes")
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
