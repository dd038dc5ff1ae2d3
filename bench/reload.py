#!/usr/bin/env python3
"""Reloads of a large list under load (issue 13): does a reload cost calls?

    python3 bench/reload.py [--destinations 10000] [--rate 5000] [--seconds 30] [--every 6]
                            [--probing]

sipdisp (2 workers, io_uring) with a list of N destinations in set 1 — distinct URIs
`sip:dN@127.0.0.1:PORT`, all one `sipdisp-load respond` on loopback — and a round-robin route;
`sipdisp-load send` offers RATE INVITEs/s for SECONDS while `dispatcher.reload` is called over
the admin API every EVERY seconds (the file is rewritten before each, so each reload builds a
new plane). Prints the loss and the reload times. With --probing, keepalives run too
(ds_ping_interval 10 s). Every process started is stopped at exit.
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--destinations", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=6.0)
    ap.add_argument("--probing", action="store_true")
    a = ap.parse_args()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, run.on_signal)
    work = tempfile.mkdtemp(prefix="sipdisp-reload-")
    try:
        rport = run.free_port()
        lst = os.path.join(work, "dispatcher.list")

        def write_list(gen):
            with open(lst + ".tmp", "w") as f:
                for i in range(a.destinations):
                    f.write(f"1 sip:d{i}@127.0.0.1:{rport} 0 0 gen={gen}\n")
            os.replace(lst + ".tmp", lst)

        write_list(0)
        port, admin = run.free_port(), run.free_port()
        cfg = os.path.join(work, "s.toml")
        probing = 'ds_ping_interval = 10\n' if a.probing else ''
        with open(cfg, "w") as f:
            f.write(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nworkers = 2\ndatapath = "io_uring"\n'
                    f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
                    f'[dispatcher]\nlist_file = "{lst}"\nreload_delta = 0\n{probing}'
                    f'[[route]]\nselect = "1=4"\n')
        log = open(os.path.join(work, "sipdisp.log"), "w")
        resp = run.start([run.LOAD, "respond", "--listen", f"127.0.0.1:{rport}", "--seconds", "600"], log)
        lb = run.start([run.SIPDISP, "run", "--config", cfg], log)
        time.sleep(1.5)
        if lb.poll() is not None or resp.poll() is not None:
            raise RuntimeError(open(log.name).read())
        times = []
        stop = threading.Event()

        def reloader():
            gen = 0
            while not stop.wait(a.every):
                gen += 1
                write_list(gen)
                body = json.dumps({"jsonrpc": "2.0", "method": "dispatcher.reload", "id": gen}).encode()
                req = urllib.request.Request(f"http://127.0.0.1:{admin}/RPC", data=body, method="POST")
                t0 = time.monotonic()
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                times.append((time.monotonic() - t0) * 1000)

        th = threading.Thread(target=reloader)
        th.start()
        out = run.send(f"127.0.0.1:{port}", "--rate", a.rate, "--seconds", a.seconds, "--drain-ms", 500)
        stop.set()
        th.join()
        print(f"{a.destinations} destinations, {a.rate}/s for {a.seconds:.0f} s, reload every "
              f"{a.every:.0f} s{' with probing' if a.probing else ''}:")
        print(f"sent {out['sent']}, received {out['received']}, loss {out['loss_pct']:.3f} %, "
              f"p99 {out['p99_us']:.0f} µs, p99.9 {out['p999_us']:.0f} µs")
        print("reloads (ms): " + ", ".join(f"{t:.1f}" for t in times))
    finally:
        run.stop_all()
        os.system(f"rm -rf {work}")


if __name__ == "__main__":
    main()
