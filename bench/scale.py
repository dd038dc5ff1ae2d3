#!/usr/bin/env python3
"""sipdisp's memory with 4, 1,000 and 10,000 destinations (issue 7's scaling figures).

    python3 bench/scale.py            (after bench/run.sh built target/release/sipdisp{,-load})

For each size: a list file of N destinations in set 1 (127.x.y.z:5060, loopback only, nothing
listens there), sipdisp with one io_uring worker and a round-robin route; VmRSS after start,
then 2 s of INVITEs at 10,000/s (each forwarded to the next destination; the datagrams die
at the closed ports), then VmRSS and VmHWM. Prints a Markdown table. Stops what it started.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

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
    rows = []
    work = tempfile.mkdtemp(prefix="sipdisp-scale-")
    try:
        for n in (4, 1000, 10000):
            with open(os.path.join(work, "dispatcher.list"), "w") as f:
                for i in range(1, n + 1):
                    f.write(f"1 sip:127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:5060\n")
            port = run.free_port()
            cfg = os.path.join(work, "s.toml")
            with open(cfg, "w") as f:
                f.write(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nworkers = 1\ndatapath = "io_uring"\n'
                        f'[dispatcher]\nlist_file = "dispatcher.list"\n[[route]]\nselect = "1=4"\n')
            log = open(os.path.join(work, f"{n}.log"), "w")
            p = run.start([run.SIPDISP, "run", "--config", cfg], log)
            try:
                time.sleep(1.0)
                if p.poll() is not None:
                    raise RuntimeError(f"sipdisp exited: {open(log.name).read()}")
                idle = status_kb(p.pid, "VmRSS")
                out = run.send(f"127.0.0.1:{port}", "--rate", 10000, "--seconds", 2, "--drain-ms", 100)
                busy, hwm = status_kb(p.pid, "VmRSS"), status_kb(p.pid, "VmHWM")
                rows.append((n, idle, busy, hwm, out["sent"]))
            finally:
                run.stop(p)
                log.close()
    finally:
        run.stop_all()
    print("| destinations | VmRSS idle MiB | VmRSS after 20,000 INVITEs MiB | VmHWM MiB |")
    print("|---|---|---|---|")
    for n, idle, busy, hwm, _ in rows:
        print(f"| {n:,} | {idle / 1024:.1f} | {busy / 1024:.1f} | {hwm / 1024:.1f} |")
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
