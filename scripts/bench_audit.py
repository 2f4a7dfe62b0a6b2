"""Benchmark of ``ledger audit`` on a large chain (issue 6's figures).

    python scripts/bench_audit.py [--chain /tmp/audit-bench/chain-1m] [--modes data,api,incremental]
                                  [--txs 1000000] [--block-txs 1000] [--append-blocks 1000] [--append-block-txs 10]
                                  [--audit-arg=--workers=2 ...] [--src DIR] [--work DIR] [--json FILE]

The chain is one made by scripts/make_audit_chain.py (created first, with
``--txs`` and ``--block-txs``, if ``--chain`` holds none). Each mode runs
``ledger audit`` as a child process and measures it: wall time, CPU time
(user + system, its worker processes included), and peak memory, both the
largest single process (``wait4``'s ru_maxrss) and the whole process tree
(the sum of VmRSS of the audit and its children, polled every 0.1 s);
``peak_rss_mib`` is the larger of the two.

Modes:
  data              ``ledger audit --data-dir CHAIN/data --json`` (full audit, replay included)
  data-no-replay    the same with ``--no-replay``
  api               one node (``ledger node run``) serving the chain from a scratch home with free ports,
                    once ``GET /v1/status`` answers: ``ledger audit --node URL --genesis CHAIN/genesis.json
                    [--member auditor] --key CHAIN/keys/auditor.json --json``; then the node is stopped
                    (``--member`` is passed only if ``ledger audit --help`` lists it)
  incremental       on a copy of the chain (under --work): ``ledger audit --data-dir COPY/data --state STATE
                    --json`` once (recorded as ``incremental-first``), then ``--append-blocks`` blocks of
                    ``--append-block-txs`` transactions are appended (make_audit_chain.py's append mode), then the
                    same command again, timed (``incremental``: tx_per_s counts the appended transactions only)

A mode that fails (e.g. an option ``ledger audit`` does not have yet) is
reported with the command and the end of its stderr, and the next mode
runs; the exit status is 1 if any mode failed.

Which ``ledger``: this checkout's (.venv/bin/ledger, else ``python -m
node.cli``), or with ``--src DIR`` another source tree's, e.g. today's
committed code for "before" figures:

    mkdir /tmp/head && git archive HEAD | tar -x -C /tmp/head
    .venv/bin/python scripts/bench_audit.py --src /tmp/head --modes data,data-no-replay

``--json FILE`` writes a list of records, one per mode, each {mode, txs,
blocks, seconds, tx_per_s, peak_rss_mib, cpu, python, commit, date, ...}
(rewritten after every mode, so an interrupted run keeps what finished).
Speed is measured here, never asserted in a test: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MAKE_CHAIN = REPO / "scripts" / "make_audit_chain.py"
MODES = ("data", "data-no-replay", "api", "incremental")
NODE_READY_TIMEOUT_S = 180
NODE_STOP_TIMEOUT_S = 20
POLL_S = 0.1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- measuring a child process ----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return found


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants now (KiB)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        stack += _children(current)
    return total


def _vm_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Measured:
    def __init__(self, command: list[str], exit_code: int, seconds: float, cpu_s: float, maxrss_mib: float,
                 tree_peak_mib: float, stdout: str, stderr: str, timed_out: bool) -> None:
        self.command = command
        self.exit_code = exit_code
        self.seconds = seconds
        self.cpu_s = cpu_s
        self.maxrss_mib = maxrss_mib
        self.tree_peak_mib = tree_peak_mib
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out

    @property
    def peak_rss_mib(self) -> float:
        return max(self.maxrss_mib, self.tree_peak_mib)

    def error_tail(self, lines: int = 6) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


def run_measured(command: list[str], env: dict[str, str], cwd: Path, timeout_s: float, work: Path) -> Measured:
    """Run ``command`` to its end; wall time, CPU and memory of it and its children."""
    out_path, err_path = work / "child.stdout", work / "child.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    peak_kib = 0
    finished = threading.Event()
    timed_out = False

    def poll() -> None:
        nonlocal peak_kib
        while not finished.wait(POLL_S):
            peak_kib = max(peak_kib, _tree_rss_kib(process.pid))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    def kill() -> None:
        nonlocal timed_out
        timed_out = True
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    finally:
        seconds = time.perf_counter() - started
        timer.cancel()
        finished.set()
        poller.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return Measured(command, process.returncode, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                    peak_kib / 1024, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                    timed_out)


# --- the ledger command and the environment -----------------------------------------------------------------------


def ledger_command(src: Path | None) -> tuple[list[str], dict[str, str], Path]:
    """The command, its environment and the directory to run it in.

    ``python -m`` puts the working directory first on sys.path, ahead of
    PYTHONPATH: with ``--src`` the command runs in that tree, so its modules
    (not this checkout's, nor the venv's editable install) are the ones imported.
    """
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
        return [sys.executable, "-m", "node.cli"], env, src.resolve()
    venv_ledger = REPO / ".venv" / "bin" / "ledger"
    if venv_ledger.exists():
        return [str(venv_ledger)], env, REPO
    env["PYTHONPATH"] = str(REPO)
    return [sys.executable, "-m", "node.cli"], env, REPO


def describe_source(src: Path | None) -> str:
    """The commit of the code that runs the audit; ``+dirty`` if this checkout has uncommitted changes."""
    where = src if src is not None else REPO
    result = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        return f"unknown (--src {src})"
    commit = result.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the chain --------------------------------------------------------------------------------------------------


def ensure_chain(chain: Path, txs: int, block_txs: int, members: int, seed: int) -> dict[str, Any]:
    if not (chain / "chain.json").exists() or not (chain / "data" / "ledger.sqlite").exists():
        if chain.exists() and any(chain.iterdir()):
            raise SystemExit(f"error: {chain} is not empty but holds no chain made by make_audit_chain.py")
        log(f"== no chain in {chain}: making {txs:,} transactions in blocks of {block_txs:,}")
        subprocess.run([sys.executable, str(MAKE_CHAIN), "--out", str(chain), "--txs", str(txs), "--block-txs",
                        str(block_txs), "--members", str(members), "--seed", str(seed)], check=True, cwd=REPO)
    return json.loads((chain / "chain.json").read_text())


def append_blocks(chain: Path, blocks: int, block_txs: int) -> dict[str, Any]:
    subprocess.run([sys.executable, str(MAKE_CHAIN), "--out", str(chain), "--append-blocks", str(blocks),
                    "--block-txs", str(block_txs)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return json.loads((chain / "chain.json").read_text())


# --- the benchmark --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.chain: Path = args.chain.resolve()
        self.ledger, self.env, self.cwd = ledger_command(args.src)
        self.work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.work))
        self.records: list[dict[str, Any]] = []
        self.common = {"cpu": cpu_model(), "python": platform.python_version(), "commit": args.commit or describe_source(args.src),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.failed = False
        self._audit_help: str | None = None

    def audit_help(self) -> str:
        if self._audit_help is None:
            result = subprocess.run([*self.ledger, "audit", "--help"], capture_output=True, text=True, env=self.env,
                                    cwd=self.cwd, check=False)
            self._audit_help = result.stdout + result.stderr
        return self._audit_help

    def audit(self, mode: str, options: list[str], chain_info: dict[str, Any], *, new_txs: int | None = None,
              new_blocks: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        command = [*self.ledger, "audit", *options, "--json", *self.args.audit_arg]
        if not self.args.commit:  # the code may change between modes (a commit landing mid-run): say which ran
            self.common["commit"] = describe_source(self.args.src)
        log(f"== {mode}: {' '.join(command)}  [commit {self.common['commit']}]")
        measured = run_measured(command, self.env, self.cwd, self.args.timeout, self.work)
        report: dict[str, Any] = {}
        try:
            report = json.loads(measured.stdout)
        except ValueError:
            pass
        sources = report.get("sources") or report.get("stores") or []
        first = sources[0] if sources and isinstance(sources[0], dict) else {}
        txs = first.get("transactions", chain_info["transactions"])
        blocks = first.get("blocks", chain_info["blocks"])
        counted = new_txs if new_txs is not None else txs
        ok = measured.exit_code == 0 and not measured.timed_out and report.get("ok") is not False
        record: dict[str, Any] = {
            "mode": mode, "txs": txs, "blocks": blocks, "seconds": round(measured.seconds, 2),
            "tx_per_s": round(counted / measured.seconds) if ok and counted else None,
            "peak_rss_mib": round(measured.peak_rss_mib, 1), **self.common,
            "ok": ok, "exit_code": measured.exit_code, "command": " ".join(command),
            "cpu_s": round(measured.cpu_s, 2), "cores_used": round(measured.cpu_s / measured.seconds, 2),
            "peak_rss_largest_process_mib": round(measured.maxrss_mib, 1),
            "peak_rss_process_tree_mib": round(measured.tree_peak_mib, 1),
            "chain": str(self.chain), "chain_txs": chain_info["transactions"], "chain_blocks": chain_info["blocks"],
            **({"new_txs": new_txs, "new_blocks": new_blocks} if new_txs is not None else {}),
            **(extra or {}),
        }
        if ok:
            rate = f"{record['tx_per_s']:,} tx/s" + (" (appended txs only)" if new_txs is not None else "")
            log(f"   ok: {measured.seconds:.1f}s, {rate}, {txs:,} txs / {blocks:,} blocks in the report, "
                f"peak RSS {measured.peak_rss_mib:.0f} MiB, CPU {measured.cpu_s:.0f}s")
        else:
            why = "timed out" if measured.timed_out else f"exit {measured.exit_code}"
            hint = ""
            if measured.exit_code == 2 and "usage:" in measured.stderr:
                hint = " (this `ledger audit` does not take this mode's arguments: not implemented in this version?)"
            record["error"] = measured.error_tail(40)
            if report:
                record["report"] = report
            log(f"   FAILED ({why}){hint} after {measured.seconds:.1f}s:\n      "
                + measured.error_tail(10).replace("\n", "\n      "))
            self.failed = True
        self.records.append(record)
        self.save()
        return record

    def fail(self, mode: str, why: str) -> None:
        log(f"   FAILED: {why}")
        self.failed = True
        self.records.append({"mode": mode, "ok": False, "error": why, "chain": str(self.chain), **self.common})
        self.save()

    def save(self) -> None:
        if self.args.json:
            self.args.json.write_text(json.dumps(self.records, indent=2) + "\n")

    # the modes

    def run_data(self, chain_info: dict[str, Any], no_replay: bool) -> None:
        options = ["--data-dir", str(self.chain / "data")] + (["--no-replay"] if no_replay else [])
        self.audit("data-no-replay" if no_replay else "data", options, chain_info)

    def run_api(self, chain_info: dict[str, Any]) -> None:
        home = self.work / "node-home"
        home.mkdir()
        original = self.chain / "validator-0"
        for name in ("key.json", "genesis.json"):
            shutil.copy2(original / name, home / name)
        config = json.loads((original / "node.json").read_text())
        port = free_port()
        config["listen"] = f"127.0.0.1:{free_port()}"
        config["api"] = f"127.0.0.1:{port}"
        (home / "node.json").write_text(json.dumps(config, indent=2) + "\n")
        url = f"http://127.0.0.1:{port}"
        node_log = self.work / "node.log"
        command = [*self.ledger, "node", "run", "--home", str(home), "--data-dir", str(self.chain / "data")]
        log(f"== api: starting a node: {' '.join(command)} (log {node_log})")
        with open(node_log, "ab") as out:
            node = subprocess.Popen(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=self.env,
                                    cwd=self.cwd, start_new_session=True)
        try:
            started = time.perf_counter()
            status = self.wait_for_node(node, url)
            if status is None:
                tail = "\n".join(node_log.read_text(errors="replace").strip().splitlines()[-5:])
                self.fail("api", f"the node did not answer GET {url}/v1/status within {NODE_READY_TIMEOUT_S}s "
                                 f"(exit {node.poll()}); its log ends:\n{tail}")
                return
            ready_s = time.perf_counter() - started
            log(f"   node ready in {ready_s:.1f}s at height {status.get('height')} ({url})")
            if status.get("height") != chain_info["blocks"]:
                log(f"   warning: the node is at height {status.get('height')}, the chain's head is {chain_info['blocks']}")
            options = ["--node", url, "--genesis", str(self.chain / "genesis.json")]
            if "--member" in self.audit_help():
                options += ["--member", self.args.member]
            options += ["--key", str(self.chain / "keys" / f"{self.args.member}.json")]
            self.audit("api", options, chain_info, extra={"node_ready_s": round(ready_s, 2),
                                                          "node_peak_rss_mib": _vm_hwm_mib(node.pid)})
        finally:
            self.stop_node(node)

    def wait_for_node(self, node: subprocess.Popen[bytes], url: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + NODE_READY_TIMEOUT_S
        while time.monotonic() < deadline and node.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/v1/status", timeout=2) as response:
                    return json.loads(response.read())  # type: ignore[no-any-return]
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.3)
        return None

    def stop_node(self, node: subprocess.Popen[bytes]) -> None:
        if node.poll() is not None:
            return
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(NODE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log(f"   node stopped (exit {node.returncode})")

    def run_incremental(self) -> None:
        copy = self.work / "chain"
        log(f"== incremental: copying {self.chain} to {copy}")
        started = time.perf_counter()
        shutil.copytree(self.chain, copy, ignore=shutil.ignore_patterns("consensus.wal", "*.log"))
        log(f"   copied in {time.perf_counter() - started:.1f}s")
        info = json.loads((copy / "chain.json").read_text())
        state = self.work / "audit-state.json"
        options = ["--data-dir", str(copy / "data"), "--state", str(state)]
        first = self.audit("incremental-first", options, info)
        if not first["ok"]:
            log("   skipping the rest of incremental: the first (full) audit with --state failed")
            return
        if not state.exists():
            log(f"   warning: {state} was not written by the first run")
        log(f"== incremental: appending {self.args.append_blocks:,} blocks of {self.args.append_block_txs:,} txs")
        started = time.perf_counter()
        after = append_blocks(copy, self.args.append_blocks, self.args.append_block_txs)
        appended = after["runs"][-1]
        log(f"   appended {appended['transactions']:,} txs in {time.perf_counter() - started:.1f}s, "
            f"failed receipts {sum(appended['failed_receipts'].values())}")
        self.audit("incremental", options, after, new_txs=appended["transactions"], new_blocks=appended["blocks"],
                   extra={"state_file_bytes": state.stat().st_size if state.exists() else None})

    def run(self) -> int:
        modes = [m.strip() for m in self.args.modes.split(",") if m.strip()]
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise SystemExit(f"error: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
        chain_info = ensure_chain(self.chain, self.args.txs, self.args.block_txs, self.args.members, self.args.seed)
        log(f"chain {self.chain}: {chain_info['transactions']:,} txs in {chain_info['blocks']:,} blocks; "
            f"ledger: {' '.join(self.ledger)} (commit {self.common['commit']}); work dir {self.work}")
        try:
            for mode in modes:
                try:
                    if mode in ("data", "data-no-replay"):
                        self.run_data(chain_info, mode == "data-no-replay")
                    elif mode == "api":
                        self.run_api(chain_info)
                    else:
                        self.run_incremental()
                except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as error:
                    self.fail(mode, f"{type(error).__name__}: {error}")
        finally:
            if self.args.keep_work:
                log(f"kept {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        self.summary()
        return 1 if self.failed else 0

    def summary(self) -> None:
        print(f"{'mode':<18} {'ok':<4} {'txs':>10} {'blocks':>7} {'seconds':>9} {'tx/s':>8} {'peak RSS MiB':>13}"
              f" {'CPU s':>8}")
        for r in self.records:
            rate = f"{r['tx_per_s']:,}" if r.get("tx_per_s") else "-"
            print(f"{r['mode']:<18} {'yes' if r['ok'] else 'NO':<4} {r.get('txs', 0):>10,} {r.get('blocks', 0):>7,} "
                  f"{r.get('seconds', 0):>9.1f} {rate:>8} {r.get('peak_rss_mib', 0):>13.0f} {r.get('cpu_s', 0):>8.0f}")
        print(f"(commit {self.common['commit']}, {self.common['cpu']}, Python {self.common['python']}; "
              "incremental: tx/s over the appended transactions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", type=Path, default=Path("/tmp/audit-bench/chain-1m"),
                        help="a chain made by make_audit_chain.py (made here if missing)")
    parser.add_argument("--modes", default="data,api,incremental", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--txs", type=int, default=1_000_000, help="if the chain is made here: transactions")
    parser.add_argument("--block-txs", type=int, default=1_000, help="if the chain is made here: per block")
    parser.add_argument("--members", type=int, default=1_000, help="if the chain is made here: participants")
    parser.add_argument("--seed", type=int, default=1, help="if the chain is made here")
    parser.add_argument("--append-blocks", type=int, default=1_000, help="incremental: blocks appended")
    parser.add_argument("--append-block-txs", type=int, default=10, help="incremental: transactions per appended block")
    parser.add_argument("--member", default="auditor", help="api: the member whose key signs the reads")
    parser.add_argument("--audit-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for every `ledger audit` (repeat; e.g. --audit-arg=--workers=1)")
    parser.add_argument("--src", type=Path, help="run `python -m node.cli` from this source tree instead")
    parser.add_argument("--commit", help="what to record as the commit (default: git's, of this checkout or --src)")
    parser.add_argument("--work", type=Path, help="where the scratch dir goes (node home, chain copy, state file); "
                        "default: the system's temp dir; the incremental copy needs the chain's size free")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch dir")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds before an audit is killed")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the records (a JSON list) here")
    args = parser.parse_args()
    sys.exit(Bench(args).run())


if __name__ == "__main__":
    main()
