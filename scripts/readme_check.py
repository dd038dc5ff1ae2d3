#!/usr/bin/env python3
"""Runs the README's shell blocks as a new user would, and fails when one does not work.

    python3 scripts/readme_check.py      (from the repository; scripts/test.sh runs it last)

Block by block, in order: the test-suite command is skipped (it is what runs this script),
as is the fuzzing block (`cargo install`, minutes of fuzzing); the block that starts the load
balancer (`… run --config …`) is started in the background and must log "listening on"
within 15 minutes (it may have to build first); every line of the other blocks runs through
`bash -c` from the repository root with a 2-minute limit and must exit 0 (sipp `-bg` lines:
99 with one "Background mode" line per sipp, which is how sipp's parent exits). Afterwards the load
balancer gets SIGINT and must stop cleanly. Every process it started is stopped; traffic
stays on loopback (the README's addresses).
"""

import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = ("bash scripts/test.sh", "cargo install")


def blocks(text):
    return [b.strip("\n") for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def lines(block):
    out = []
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def main():
    with open(os.path.join(ROOT, "README.md")) as f:
        found = blocks(f.read())
    if not found:
        sys.exit("readme-check: no ```sh blocks in README.md")
    daemon = None
    log_path = os.path.join(ROOT, "target", "readme-check.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = open(log_path, "w+")
    ran = 0
    try:
        for b in found:
            ls = lines(b)
            if not ls or ls[0].startswith(SKIP):
                print(f"readme-check: skipped: {ls[0] if ls else '(empty)'}")
                continue
            if len(ls) == 1 and " run --config " in ls[0]:
                print(f"readme-check: start: {ls[0]}")
                daemon = subprocess.Popen(["bash", "-c", "exec " + ls[0]], cwd=ROOT,
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
                end = time.monotonic() + 900
                while time.monotonic() < end:
                    log.seek(0)
                    if "listening on" in log.read():
                        break
                    if daemon.poll() is not None:
                        log.seek(0)
                        sys.exit(f"readme-check: the load balancer exited:\n{log.read()}")
                    time.sleep(0.5)
                else:
                    sys.exit("readme-check: the load balancer did not start within 15 minutes")
                continue
            for line in ls:
                print(f"readme-check: run: {line}")
                r = subprocess.run(["bash", "-c", line], cwd=ROOT, timeout=120,
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True)
                # sipp's parent exits 99 after putting itself in the background (-bg).
                backgrounded = " -bg" in line and r.returncode == 99 and \
                    r.stdout.count("Background mode") == line.count(" -bg")
                if r.returncode != 0 and not backgrounded:
                    log.seek(0)
                    sys.exit(f"readme-check: exit {r.returncode}: {line}\n--- stdout\n{r.stdout}"
                             f"\n--- stderr\n{r.stderr}\n--- load balancer log\n{log.read()}")
                ran += 1
        if daemon is not None:
            daemon.send_signal(signal.SIGINT)
            try:
                code = daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sys.exit("readme-check: the load balancer did not stop within 30 s of SIGINT")
            daemon = None
            if code != 0:
                log.seek(0)
                sys.exit(f"readme-check: the load balancer stopped with {code}:\n{log.read()}")
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGKILL)
        # Whatever a failing block left in the background (the README's own stop line
        # runs when everything passes).
        subprocess.run(["pkill", "-f", "sipp -sn uas -i 127.0.0.1"], check=False)
    print(f"readme-check: ok ({ran} commands)")


if __name__ == "__main__":
    main()
