#!/usr/bin/env python3
"""A minimal launcher for fewstep across processes on one machine.

Starts one process per rank with the variables a launcher such as torchrun
sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), waits for
them with a time limit, and can start only some ranks or kill one mid-run:
what the tests of dist/ need and torchrun does not offer (torchrun stops the
other workers itself when one dies). Loopback only: MASTER_ADDR is
127.0.0.1 unless --master-addr says otherwise.

    tools/dist_launch.py --nproc 2 -- build/fewstep sweep ...
    tools/dist_launch.py --nproc 2 --ranks 0 -- build/fewstep generate ...
    tools/dist_launch.py --nproc 2 --kill-rank 1 --kill-when-file 'out/units/*.unit' -- ...

Exit status: 0 when every started rank exited 0, else the first non-zero
status (a killed rank counts only if another also failed), 124 on timeout.
Each rank's output is prefixed "[rank R] " (stdout and stderr alike) on
stderr, or written to --log-dir/rank-R.{out,err}.
"""
import argparse
import glob
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port(addr="127.0.0.1"):
    """A TCP port free on `addr` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def rank_env(rank, world, port, addr="127.0.0.1", local_rank=None, extra=None):
    """The environment of one rank, as torchrun's env:// contract defines it."""
    env = dict(os.environ)
    for k in ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"):
        env.pop(k, None)
    env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank if local_rank is None else local_rank),
                "MASTER_ADDR": addr, "MASTER_PORT": str(port)})
    env.update(extra or {})
    return env


def launch(cmd, nproc, ranks=None, port=None, addr="127.0.0.1", timeout=240, kill_rank=None,
           kill_when_file=None, kill_after_s=None, log_dir=None, env_extra=None):
    """Runs `cmd` as ranks `ranks` (default all) of a world of `nproc`.

    Returns (status, {rank: returncode}, {rank: (stdout, stderr)}). Kills
    every process still running at `timeout` seconds (status 124). With
    kill_rank, that rank gets SIGKILL once a file matches the glob
    kill_when_file (or after kill_after_s seconds)."""
    port = port or free_port(addr)
    ranks = list(range(nproc)) if ranks is None else ranks
    procs, outs = {}, {}
    for r in ranks:
        procs[r] = subprocess.Popen(cmd, env=rank_env(r, nproc, port, addr, extra=env_extra),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    readers = {}
    for r, p in procs.items():
        outs[r] = ([], [])
        for stream, buf in ((p.stdout, outs[r][0]), (p.stderr, outs[r][1])):
            t = threading.Thread(target=lambda s=stream, b=buf: b.extend(s.read().decode(errors="replace").splitlines(True)),
                                 daemon=True)
            t.start()
            readers.setdefault(r, []).append(t)
    start = time.monotonic()
    killed = False
    status = 0
    while any(p.poll() is None for p in procs.values()):
        now = time.monotonic() - start
        if now > timeout:
            for p in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
            status = 124
            break
        if kill_rank is not None and not killed and procs[kill_rank].poll() is None:
            due = (kill_when_file and glob.glob(kill_when_file)) or (kill_after_s is not None and now > kill_after_s)
            if due:
                os.killpg(procs[kill_rank].pid, signal.SIGKILL)
                killed = True
        time.sleep(0.05)
    codes = {r: p.wait() for r, p in procs.items()}
    for ts in readers.values():
        for t in ts:
            t.join(timeout=5)
    texts = {r: ("".join(o), "".join(e)) for r, (o, e) in outs.items()}
    if status == 0:
        for r in sorted(codes):
            if codes[r] != 0 and not (killed and r == kill_rank):
                status = codes[r]
                break
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        for r, (o, e) in texts.items():
            with open(os.path.join(log_dir, f"rank-{r}.out"), "w") as f:
                f.write(o)
            with open(os.path.join(log_dir, f"rank-{r}.err"), "w") as f:
                f.write(e)
    return status, codes, texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, required=True, help="WORLD_SIZE")
    ap.add_argument("--ranks", help="comma list of the ranks to start (default: all)")
    ap.add_argument("--master-addr", default="127.0.0.1")
    ap.add_argument("--master-port", type=int, help="default: a free port")
    ap.add_argument("--timeout", type=float, default=240, help="seconds before every rank is killed (exit 124)")
    ap.add_argument("--kill-rank", type=int)
    ap.add_argument("--kill-when-file", help="glob: kill --kill-rank once a file matches")
    ap.add_argument("--kill-after", type=float, help="seconds: kill --kill-rank then")
    ap.add_argument("--log-dir", help="write rank-R.out/.err there instead of prefixed stderr")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command given")
    ranks = [int(x) for x in a.ranks.split(",")] if a.ranks else None
    status, codes, texts = launch(cmd, a.nproc, ranks, a.master_port, a.master_addr, a.timeout, a.kill_rank,
                                  a.kill_when_file, a.kill_after, a.log_dir)
    if not a.log_dir:
        for r in sorted(texts):
            for line in (texts[r][0] + texts[r][1]).splitlines():
                print(f"[rank {r}] {line}", file=sys.stderr)
    print(f"ranks' exit codes: {codes}" + (" (timed out)" if status == 124 else ""), file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
