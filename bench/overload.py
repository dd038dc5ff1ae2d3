#!/usr/bin/env python3
"""Overload priority (issue 13): what reaches the callers when sipdisp cannot keep up.

First finds sipdisp's loss-free rate (one worker, stateless route over 4 responder ports, new
INVITEs at rising rates, the highest with < 0.1 % loss), then offers FACTOR times that rate
(default 3) to a fresh sipdisp for each variant and counts, from the generator and the
responder:

* responses relayed: the responses sipdisp relayed (its `relayed` count, printed when it
  stops) / the 200 OKs the responder sent (every request the backends saw was answered once,
  so this is the share of backend responses that sipdisp delivered), and the share the caller
  actually received (lower when the generator, on the same two cores, falls behind itself);
* new requests forwarded (sipdisp's `forwarded`), refused (its 503 replies) and dropped
  (neither: lost in its socket queues; the kernel's drop count of its sockets is shown
  too), as shares of those sent.

Variants: sipdisp with `overload_admit_percent` 50 (the default) and 100 (never refuse: the
lanes alone), and, with `--before /path/to/sipdisp`, a binary built before the lanes (one
socket queue for everything) for comparison. All traffic stays on 127.0.0.1; every process
started here is stopped at exit; every load loop is bounded in time.

    bench/overload.sh [--factor 3] [--seconds 4] [--rates "20000 40000 ..."] [--before BIN]
                      [--failover]   (issue 12's figure: --failover --factor 2)
"""
import argparse, json, os, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "target/release/sipdisp-load")
SIPDISP = os.environ.get("SIPDISP_BIN") or os.path.join(ROOT, "target/release/sipdisp")
BUF = 8 << 20


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()[0]


class Setup:
    """One responder (4 ports) and one sipdisp in front of it."""

    def __init__(self, work, binary, admit, datapath, failover=False):
        self.backends = [f"127.0.0.1:{free_port()}" for _ in range(4)]
        lst = os.path.join(work, "d.list")
        with open(lst, "w") as f:
            f.writelines(f"1 sip:{b}\n" for b in self.backends)
        self.target = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(work, "lb.toml")
        admit_line = f"overload_admit_percent = {admit}\n" if admit is not None else ""
        with open(cfg, "w") as f:
            f.write(f'[server]\nlisten = ["udp:{self.target}"]\nworkers = 1\n'
                    f'datapath = "{datapath}"\nrecv_buffer_size = {BUF}\nsend_buffer_size = {BUF}\n'
                    f'{admit_line}[dispatcher]\nlist_file = "{lst}"\n'
                    + ("flags = 2\n[tm]\nmax_transactions = 262144\n" if failover else "")
                    + '[[route]]\nselect = "1=4"\n'
                    + ("failover = true\n" if failover else ""))
        args = [LOAD, "respond", "--json", "--seconds", "300"]
        for b in self.backends:
            args += ["--listen", b]
        self.responder = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)
        self.port = int(self.target.rsplit(":", 1)[1])
        self.lb = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(0.7)
        if self.lb.poll() is not None:
            raise RuntimeError(f"{binary} exited at start ({self.lb.returncode})")

    def send(self, rate, seconds):
        out = subprocess.run([LOAD, "send", "--to", self.target, "--json", "--rate", str(rate),
                              "--seconds", str(seconds), "--drain-ms", "1000"],
                             capture_output=True, text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise RuntimeError(f"sipdisp-load send: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def socket_drops(self):
        """The kernel's drop counter summed over sipdisp's sockets on its port (both lanes)."""
        total = 0
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].split(":")[1], 16) == self.port:
                    total += int(cols[-1])
        return total

    def close(self):
        """Stops both; returns the responder's counts and sipdisp's stop summary."""
        drops = self.socket_drops() if self.lb.poll() is None else 0
        if self.lb.poll() is None:
            self.lb.send_signal(signal.SIGTERM)
        try:
            err = self.lb.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            self.lb.kill()
            err = self.lb.communicate()[1]
        summary = {"socket_drops": drops}
        for line in err.splitlines():
            if "stopped:" in line:
                for tok in line.split():
                    k, _, v = tok.partition("=")
                    if v.isdigit():
                        summary[k] = int(v)
        text = stop(self.responder)
        resp = json.loads(text.strip().splitlines()[-1])
        return resp, summary


def lossfree(work, binary, datapath, rates, seconds, failover):
    """The highest rate of `rates` with < 0.1 % loss (ascending, stops at the first lossy)."""
    best = None
    s = Setup(work, binary, 100, datapath, failover)
    try:
        s.send(rates[0] // 4, 1)  # warm-up
        for rate in rates:
            r = s.send(rate, seconds)
            print(f"  ladder {rate}/s: loss {r['loss_pct']:.3f} % (achieved {r['achieved_rate']}/s)",
                  flush=True)
            if r["loss_pct"] >= 0.1:
                break
            best = rate
    finally:
        s.close()
    return best


def overload_point(work, binary, admit, datapath, rate, seconds, failover):
    s = Setup(work, binary, admit, datapath, failover)
    try:
        r = s.send(rate, seconds)
    finally:
        resp, lb = s.close()
    answered = resp["answered"]
    sent = max(r["sent"], 1)
    forwarded, relayed, refused = lb.get("forwarded", 0), lb.get("relayed", 0), lb.get("replied_5xx", 0)
    return {
        "sent": r["sent"],
        "achieved_rate": r["achieved_rate"],
        "backend_answered": answered,
        "sipdisp_forwarded": forwarded,
        "sipdisp_relayed": relayed,
        "sipdisp_refused_503": refused,
        "sipdisp_socket_drops": lb["socket_drops"],
        "caller_received_200": r["received"] + r["late"],
        "caller_received_503": r["refused"],
        "responses_relayed_pct": 100.0 * relayed / max(answered, 1),
        "responses_at_caller_pct": 100.0 * (r["received"] + r["late"]) / max(answered, 1),
        "forwarded_pct": 100.0 * forwarded / sent,
        "refused_pct": 100.0 * refused / sent,
        "dropped_pct": 100.0 * max(r["sent"] - forwarded - refused, 0) / sent,
        "p99_us": r["p99_us"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rates", default="20000 30000 40000 50000 60000 70000 80000 100000 120000")
    ap.add_argument("--datapath", default="io_uring")
    ap.add_argument("--before", help="a sipdisp binary from before the lanes, for comparison")
    ap.add_argument("--failover", action="store_true",
                    help="a transaction-stateful route (failover = true, flags = 2), as issue 12's figure")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    rates = [int(x) for x in a.rates.split()]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        kind = "stateful failover" if a.failover else "stateless"
        print(f"loss-free rate of sipdisp ({a.datapath}, 1 worker, {kind}):", flush=True)
        r0 = lossfree(work, SIPDISP, a.datapath, rates, min(a.seconds, 3.0), a.failover)
        if r0 is None:
            print("no loss-free rate in the ladder; give lower --rates", file=sys.stderr)
            return 1
        rate = int(r0 * a.factor)
        print(f"loss-free: {r0}/s; offering {a.factor:g}x = {rate}/s for {a.seconds:g} s", flush=True)
        variants = [("sipdisp, overload_admit_percent = 50 (default)", SIPDISP, 50),
                    ("sipdisp, overload_admit_percent = 100 (lanes only, never refuse)", SIPDISP, 100)]
        if a.before:
            variants.append(("before the lanes (one socket queue)", a.before, None))
        for label, binary, admit in variants:
            results[label] = overload_point(work, binary, admit, a.datapath, rate, a.seconds,
                                            a.failover)
            print(f"  {label}: {results[label]}", flush=True)
    print()
    print(f"Offered {rate}/s = {a.factor:g} x the loss-free {r0}/s, {a.seconds:g} s, {a.datapath}, 1 worker, {kind}")
    print()
    print("| variant | backend responses relayed by sipdisp | … received by the caller | new requests forwarded "
          "| refused 503 | dropped | kernel drops on sipdisp's sockets | p99 of answered |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['responses_relayed_pct']:.2f} % ({r['sipdisp_relayed']} of {r['backend_answered']}) "
              f"| {r['responses_at_caller_pct']:.1f} % "
              f"| {r['forwarded_pct']:.1f} % | {r['refused_pct']:.1f} % | {r['dropped_pct']:.1f} % "
              f"| {r['sipdisp_socket_drops']} | {r['p99_us'] / 1000:.0f} ms |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"lossfree": r0, "rate": rate, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
