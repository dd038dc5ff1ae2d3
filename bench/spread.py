#!/usr/bin/env python3
"""How one busy peer (one UDP 4-tuple) is spread over sipdisp's workers (issue 12).

Runs sipdisp with 2 workers on a stateful failover route twice — `spread = "flow"` (the
kernel's 4-tuple hash) and `spread = "random"` (reuseport BPF) — and floods it from a single
`sipdisp-load send` socket; reports each worker thread's CPU time (schedstat) and the loss.
All traffic stays on 127.0.0.1; every process is stopped at exit.

    bench/spread.sh [--rate 40000] [--seconds 4]
"""
import argparse, json, os, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "target/release/sipdisp-load")
SIPDISP = os.environ.get("SIPDISP_BIN") or os.path.join(ROOT, "target/release/sipdisp")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def threads(pid):
    """{thread name: CPU ns} of a process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            ns = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            continue
        out[name] = out.get(name, 0) + ns
    return out


def run(spread, rate, seconds, work):
    backends = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    lst = os.path.join(work, "d.list")
    with open(lst, "w") as f:
        f.writelines(f"1 sip:{b}\n" for b in backends)
    target = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(work, f"{spread}.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = ["udp:{target}"]\nworkers = 2\ndatapath = "io_uring"\n'
                f'spread = "{spread}"\nrecv_buffer_size = 8388608\nsend_buffer_size = 8388608\n'
                f'[dispatcher]\nlist_file = "{lst}"\nflags = 2\n'
                f'[tm]\nmax_transactions = 262144\n[[route]]\nselect = "1=4"\nfailover = true\n')
    procs = []
    try:
        args = [LOAD, "respond", "--seconds", "300"] + sum((["--listen", b] for b in backends), [])
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        lb = subprocess.Popen([SIPDISP, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(lb)
        time.sleep(0.5)
        before = threads(lb.pid)
        out = subprocess.run([LOAD, "send", "--to", target, "--json", "--rate", str(rate),
                              "--seconds", str(seconds), "--drain-ms", "300"],
                             capture_output=True, text=True, timeout=120)
        after = threads(lb.pid)
        r = json.loads(out.stdout)
        cpu = {k: (after.get(k, 0) - before.get(k, 0)) / 1e9 for k in after if k.startswith("sipdisp-w")}
        return r, cpu
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=40000)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    print(f"one peer (one 4-tuple) at {a.rate}/s for {a.seconds} s, 2 workers, stateful failover route")
    print("| spread | loss % | worker 0 CPU s | worker 1 CPU s | share of the busier worker |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for spread in ["flow", "random"]:
            r, cpu = run(spread, a.rate, a.seconds, work)
            w = [cpu.get("sipdisp-w0", 0.0), cpu.get("sipdisp-w1", 0.0)]
            share = max(w) / max(sum(w), 1e-9)
            print(f"| {spread} | {r['loss_pct']:.3f} | {w[0]:.2f} | {w[1]:.2f} | {share:.0%} |")


if __name__ == "__main__":
    sys.exit(main())
