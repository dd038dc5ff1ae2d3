#!/usr/bin/env python3
"""Forwarding benchmark driver (issue 7); started by bench/run.sh after the builds.

For each repetition, each system is started fresh with one responder (4 ports), warmed up, and
offered the same INVITE traffic at each rate of the ladder (ascending; above the fixed rates a
short search continues while loss stays below 0.1%). Per point it records the load balancer's
CPU time (sum over all its processes and threads of /proc/PID/task/TID/schedstat run time, ns;
utime+stime from /proc/PID/stat as a cross-check), loss, RTT percentiles and memory (VmHWM
and PSS summed over its processes). Results: bench/results/<stamp>.{md,json}.

Only processes started here are stopped (by their Popen handle); all addresses are 127.0.0.1.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "target/release/sipdisp-load")
SIPDISP = os.environ.get("SIPDISP_BIN") or os.path.join(ROOT, "target/release/sipdisp")
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAM_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
SOCK_BUF = 8 << 20
TM_WAIT = 5.0  # tm's default wait_timer: a transaction is freed this long after its final reply
CLK_TCK = os.sysconf("SC_CLK_TCK")

SYSTEMS = ["direct", "raw", "sipdisp-uring", "sipdisp-mmsg", "sipdisp-failover", "kam-stateless",
           "kam-stateful"]
LABEL = {
    "direct": "direct (no load balancer)",
    "raw": "raw UDP forwarder (floor)",
    "sipdisp-uring": "sipdisp io_uring",
    "sipdisp-mmsg": "sipdisp mmsg",
    "sipdisp-failover": "sipdisp stateful failover (io_uring)",
    "kam-stateless": "Kamailio stateless",
    "kam-stateful": "Kamailio stateful (tm)",
}

started = []


def start(args, log):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    started.append(p)
    return p


def stop(p, timeout=5.0):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in started:
        started.remove(p)


def stop_all(*_):
    for p in list(started):
        stop(p, 2.0)


def on_signal(sig, _frame):
    stop_all()
    sys.exit(128 + sig)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tasks(pids):
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                yield f"/proc/{pid}/task/{t}"
        except FileNotFoundError:
            pass


def cpu_ns(pids):
    total = 0
    for t in tasks(pids):
        try:
            with open(f"{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_ticks_ns(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total * 1_000_000_000 // CLK_TCK


def memory_kb(pids):
    hwm = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return hwm, pss


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    return out


def send(target, *extra):
    args = [LOAD, "send", "--to", target, "--json", *map(str, extra)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=700)
    if r.returncode != 0:
        raise RuntimeError(f"sipdisp-load send failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def ready(target, proc, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        out = send(target, "--window", 1, "--count", 1, "--seconds", 0.5, "--method", "options", "--drain-ms", 200)
        if out["received"] == 1:
            return True
    return False


class Running:
    """One started system: where to send, whose CPU to count, what to stop."""

    def __init__(self, target, pids, procs, settle=0.0):
        self.target, self.pids, self.procs, self.settle = target, pids, procs, settle


def launch(system, work, backends, log):
    port = free_port()
    target = f"127.0.0.1:{port}"
    with open(os.path.join(work, "dispatcher.list"), "w") as f:
        for b in backends:
            f.write(f"1 sip:{b}\n")
    if system == "direct":
        return Running(backends[0], [], [])
    if system == "raw":
        p = start([LOAD, "forward", "--listen", target, "--to", backends[0], "--seconds", "900"], log)
        return Running(target, [p.pid], [p])
    if system.startswith("sipdisp"):
        dp = "mmsg" if system == "sipdisp-mmsg" else "io_uring"
        stateful = system == "sipdisp-failover"
        cfg = os.path.join(work, f"{system}.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[server]\nlisten = ["udp:{target}"]\nworkers = 1\ndatapath = "{dp}"\n'
                f"recv_buffer_size = {SOCK_BUF}\nsend_buffer_size = {SOCK_BUF}\n"
                f'[dispatcher]\nlist_file = "dispatcher.list"\n'
                + ("flags = 2\n[tm]\nmax_transactions = 262144\npreallocate = true\n" if stateful else "")
                + '[[route]]\nselect = "1=4"\n'
                + ("failover = true\n" if stateful else "")
            )
        p = start([SIPDISP, "run", "--config", cfg], log)
        # Like tm, a stateful sipdisp frees a transaction wt_timer (5 s) after its final
        # reply: the CPU of that point includes the settling time.
        return Running(target, [p.pid], [p], settle=(TM_WAIT + 0.5) if stateful else 0.0)
    if system.startswith("kam"):
        kind = "stateless" if system == "kam-stateless" else "stateful"
        with open(os.path.join(ROOT, f"bench/kamailio/{kind}.cfg")) as f:
            text = f.read()
        text = (
            text.replace("@PORT@", str(port))
            .replace("@LIST@", os.path.join(work, "dispatcher.list"))
            .replace("@BUF@", str(SOCK_BUF))
        )
        cfg = os.path.join(work, f"{kind}.cfg")
        with open(cfg, "w") as f:
            f.write(text)
        shm = "64" if kind == "stateless" else "1536"
        args = [KAMAILIO, "-DD", "-E", "-f", cfg, "-x", "tlsf", "-m", shm, "-M", "32",
                "-b", str(SOCK_BUF), "-n", "1", "-L", KAM_MODULES, "-w", work, "-Y", work]
        p = start(args, log)
        time.sleep(0.5)
        run = Running(target, [p.pid], [p], settle=(TM_WAIT + 0.5) if kind == "stateful" else 0.0)
        return run
    raise ValueError(system)


def measure(run, rate, seconds):
    c0, t0 = cpu_ns(run.pids), cpu_ticks_ns(run.pids)
    out = send(run.target, "--rate", rate, "--seconds", seconds, "--drain-ms", 300)
    hwm, pss = memory_kb(run.pids)
    if run.settle:
        time.sleep(run.settle)  # tm frees the transactions of this point: count that CPU too
    c1, t1 = cpu_ns(run.pids), cpu_ticks_ns(run.pids)
    n = max(out["sent"], 1)
    out.update(
        cpu_us_per_req=(c1 - c0) / 1000 / n if run.pids else None,
        cpu_ticks_us_per_req=(t1 - t0) / 1000 / n if run.pids else None,
        cpu_secs=(c1 - c0) / 1e9,
        hwm_kb=hwm if run.pids else None,
        pss_kb=pss if run.pids else None,
    )
    return out


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "rustc": cmd("rustc", "--version"),
        "kamailio": cmd(KAMAILIO, "-v").splitlines()[0] if os.path.exists(KAMAILIO) else "absent",
        "git": cmd("git", "-C", ROOT, "describe", "--always", "--dirty"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "sysctl_rmem_max": open("/proc/sys/net/core/rmem_max").read().strip(),
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rng(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def fmt(v, nd=2):
    if v is None:
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def lossfree(points):
    ok = [p["offered_rate"] for p in points if p["loss_pct"] < 0.1 and p["achieved_rate"] >= 0.97 * p["offered_rate"]]
    return max(ok) if ok else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rates, 2 s each, 1 repetition")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rates", help='fixed offered rates, e.g. "5000 10000 20000 40000"')
    ap.add_argument("--search", help='rates tried above the fixed ones while loss < 0.1%%, e.g. "60000 80000"')
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--note", default="", help="a line printed under the title (e.g. machine was shared)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results"))
    a = ap.parse_args()
    reps = a.reps or (1 if a.quick else 3)
    seconds = a.seconds or (2.0 if a.quick else 4.0)
    rates = [int(r) for r in (a.rates or ("10000 40000" if a.quick else "5000 10000 20000 40000")).split()]
    search = [int(r) for r in (a.search if a.search is not None else ("80000" if a.quick else "60000 80000 120000")).split()]
    systems = [s for s in a.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s}; known: {', '.join(SYSTEMS)}")
    if reps < 1 or reps > 10 or not 0.5 <= seconds <= 60:
        ap.error("--reps 1..10, --seconds 0.5..60")
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    info = machine()
    command = shlex.join(["bench/run.sh", *sys.argv[1:]])
    print(f"# {command}\n# {info['cpu']} ({info['cores']} cores), Linux {info['kernel']}, {info['date']}, "
          f"{info['kamailio']}, {info['rustc']}, git {info['git']}, load {' '.join(info['loadavg_start'])}", flush=True)
    results = {s: [] for s in systems}  # system -> [rep -> {"points": [...], "error": str}]
    t_start = time.monotonic()
    work = tempfile.mkdtemp(prefix="sipdisp-bench-")
    try:
        for rep in range(reps):
            for system in systems:
                backends = [f"127.0.0.1:{free_port()}" for _ in range(4)]
                log = open(os.path.join(work, f"{system}-{rep}.log"), "w")
                resp = start([LOAD, "respond", *sum((["--listen", b] for b in backends), []), "--seconds", "900"], log)
                entry = {"points": [], "error": None}
                results[system].append(entry)
                run = None
                try:
                    run = launch(system, work, backends, log)
                    main_proc = run.procs[0] if run.procs else resp
                    if not ready(run.target, main_proc):
                        raise RuntimeError(f"{system} did not answer (log: {log.name})")
                    if system.startswith("kam"):
                        run.pids = [run.procs[0].pid] + children(run.procs[0].pid)
                    send(run.target, "--rate", 2000, "--seconds", 0.5, "--drain-ms", 200)  # warm-up
                    plan = list(rates)
                    i = 0
                    while i < len(plan):
                        rate = plan[i]
                        p = measure(run, rate, seconds)
                        entry["points"].append(p)
                        print(f"rep {rep + 1} {system:14} {rate:>7}/s loss {p['loss_pct']:7.3f}% "
                              f"cpu {fmt(p['cpu_us_per_req'])} µs/req p50 {p['p50_us']} p99 {p['p99_us']} µs "
                              f"achieved {p['achieved_rate']}/s", flush=True)
                        if i == len(plan) - 1 and p["loss_pct"] < 0.1 and search:
                            nxt = [r for r in search if r > rate]
                            if nxt:
                                plan.append(nxt[0])
                        i += 1
                        time.sleep(0.3)
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                    entry["error"] = str(e)
                    print(f"rep {rep + 1} {system}: ERROR {e}", flush=True)
                finally:
                    if run:
                        for p in run.procs:
                            stop(p)
                    stop(resp)
                    log.close()
    finally:
        stop_all()
    wall = time.monotonic() - t_start
    info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    info["wall_secs"] = round(wall, 1)
    report(a, command, info, systems, results, reps, seconds, rates)
    shutil.rmtree(work, ignore_errors=True)


def report(a, command, info, systems, results, reps, seconds, rates):
    all_rates = sorted({p["offered_rate"] for s in systems for r in results[s] for p in r["points"]})
    summary = {}
    for s in systems:
        rows = {}
        for rate in all_rates:
            pts = [p for r in results[s] for p in r["points"] if p["offered_rate"] == rate]
            if not pts:
                continue
            cpu = [p["cpu_us_per_req"] for p in pts]
            rows[rate] = {
                "reps": len(pts),
                "achieved": med([p["achieved_rate"] for p in pts]),
                "loss_pct": med([p["loss_pct"] for p in pts]),
                "loss_max": max(p["loss_pct"] for p in pts),
                "cpu_us": med(cpu),
                "cpu_min": rng(cpu)[0],
                "cpu_max": rng(cpu)[1],
                "cpu_ticks_us": med([p["cpu_ticks_us_per_req"] for p in pts]),
                **{k: med([p[k] for p in pts]) for k in ("p50_us", "p90_us", "p99_us", "p999_us")},
                "hwm_mb": (med([p["hwm_kb"] for p in pts]) or 0) / 1024 if pts[0]["hwm_kb"] is not None else None,
                "pss_mb": (med([p["pss_kb"] for p in pts]) or 0) / 1024 if pts[0]["pss_kb"] is not None else None,
            }
        lf = [lossfree(r["points"]) for r in results[s] if r["points"]]
        summary[s] = {"rates": rows, "lossfree": med(lf), "lossfree_range": rng(lf),
                      "errors": [r["error"] for r in results[s] if r["error"]]}

    def ratios(num, den):
        """Per rate: median over repetitions of num/den CPU per request (same repetition)."""
        out = {}
        if num not in results or den not in results:
            return out
        for rate in rates:
            rs = []
            for rn, rd in zip(results[num], results[den]):
                pn = [p for p in rn["points"] if p["offered_rate"] == rate]
                pd = [p for p in rd["points"] if p["offered_rate"] == rate]
                if pn and pd and pn[0]["cpu_us_per_req"] and pd[0]["cpu_us_per_req"]:
                    rs.append(pn[0]["cpu_us_per_req"] / pd[0]["cpu_us_per_req"])
            if rs:
                out[rate] = {"median": med(rs), "min": min(rs), "max": max(rs)}
        return out

    def lf_ratio(num, den):
        if num not in results or den not in results:
            return None
        rs = [lossfree(rn["points"]) / lossfree(rd["points"])
              for rn, rd in zip(results[num], results[den]) if rn["points"] and rd["points"] and lossfree(rd["points"])]
        return {"median": med(rs), "min": min(rs), "max": max(rs)} if rs else None

    pairs = [("sipdisp-uring", "raw"), ("sipdisp-mmsg", "raw"), ("sipdisp-uring", "kam-stateless"),
             ("sipdisp-mmsg", "kam-stateless"), ("sipdisp-uring", "kam-stateful"), ("kam-stateless", "raw"),
             ("sipdisp-failover", "raw"), ("sipdisp-failover", "kam-stateful")]
    ratio = {f"{n}/{d}": {"cpu_per_request": ratios(n, d), "lossfree_rate": lf_ratio(n, d)} for n, d in pairs}

    md = []
    md.append(f"# Forwarding benchmark, {info['date']}\n")
    if a.note:
        md.append(f"**{a.note}**\n")
    md.append(f"Command: `{command}` ({reps} repetition(s), {seconds:g} s per point, INVITE 760 B with SDP, "
              f"open loop; wall time {info['wall_secs']} s)\n")
    md.append(f"Machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, {info['kamailio']}, "
              f"{info['rustc']}, git {info['git']}, net.core.rmem_max {info['sysctl_rmem_max']}, "
              f"load average {' '.join(info['loadavg_start'])} at start, {' '.join(info['loadavg_end'])} at end.\n")
    md.append("CPU = the load balancer's run time (all processes and threads, schedstat) per request+response; "
              "values are medians over repetitions, (min–max) in brackets. Loss-free = highest offered rate "
              "with < 0.1% loss that the generator achieved. RSS = VmHWM summed over the load balancer's "
              "processes; PSS counts shared pages once (Kamailio's shm pool is pre-faulted by shm_force_alloc).\n")
    md.append("| system | offered/s | achieved/s | loss % (max) | CPU µs/req (min–max) | p50 µs | p90 µs | p99 µs | p99.9 µs | RSS MB | PSS MB |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        for rate, r in summary[s]["rates"].items():
            cpu = f"{fmt(r['cpu_us'])} ({fmt(r['cpu_min'])}–{fmt(r['cpu_max'])})" if r["cpu_us"] is not None else "–"
            n = f" ({r['reps']} of {reps} reps)" if r["reps"] < reps else ""
            md.append(f"| {LABEL[s]} | {rate}{n} | {fmt(r['achieved'], 0)} | {r['loss_pct']:.3f} ({r['loss_max']:.3f}) | {cpu} | "
                      f"{fmt(r['p50_us'], 0)} | {fmt(r['p90_us'], 0)} | {fmt(r['p99_us'], 0)} | {fmt(r['p999_us'], 0)} | "
                      f"{fmt(r['hwm_mb'], 1)} | {fmt(r['pss_mb'], 1)} |")
        for e in summary[s]["errors"]:
            md.append(f"| {LABEL[s]} | error: {e} | | | | | | | | | |")
    md.append("\n| system | highest loss-free rate/s, median (min–max) |\n|---|---|")
    for s in systems:
        lo, hi = summary[s]["lossfree_range"]
        md.append(f"| {LABEL[s]} | {fmt(summary[s]['lossfree'], 0)} ({fmt(lo, 0)}–{fmt(hi, 0)}) |")
    md.append("\nRatios within the same repetition, then the median (min–max):\n")
    md.append("| ratio | " + " | ".join(f"CPU/req at {r}/s" for r in rates) + " | loss-free rate |")
    md.append("|---|" + "---|" * (len(rates) + 1))
    for name, v in ratio.items():
        cells = []
        for r in rates:
            x = v["cpu_per_request"].get(r)
            cells.append(f"{x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f})" if x else "–")
        lf = v["lossfree_rate"]
        cells.append(f"{lf['median']:.2f} ({lf['min']:.2f}–{lf['max']:.2f})" if lf else "–")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    md.append("\nTargets (issue 7): sipdisp CPU/req ≤ 1.2× raw at the same rate; loss-free rate ≥ 2× Kamailio's; "
              "zero allocations per message (tests/it/*_alloc.rs). Issue 12: sipdisp stateful failover CPU/req ≤ 1.4× raw, "
              "≤ 0.5× Kamailio stateful; loss-free rate ≥ 3× Kamailio stateful's.")
    text = "\n".join(md) + "\n"
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(a.out, f"run-{stamp}")
    with open(base + ".md", "w") as f:
        f.write(text)
    with open(base + ".json", "w") as f:
        json.dump({"command": command, "machine": info, "reps": reps, "seconds": seconds, "rates": rates,
                   "summary": summary, "ratios": ratio, "raw": results}, f, indent=1, default=str)
    print("\n" + text)
    print(f"wrote {base}.md and {base}.json")


if __name__ == "__main__":
    main()
