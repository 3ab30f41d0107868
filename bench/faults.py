"""Fault injection on real quickstart trials: kill things, and check that nothing finished is lost.

Each case runs a short quickstart search (``--trials`` trials, two at a time, retime off) and
prints what it found:

- ``baseline``: uninterrupted; the run directory's size on disk per finished trial against
  its saved model (target: at most 1.2 x the model + 2 MB);
- ``driver``: the driver is SIGKILLed (with its in-process Ray) while a trial runs after
  another finished, then ``prunetune search --resume``: trials, rows, finished trials in the
  study, and whether a trial that had finished ran again;
- ``worker``: one trial's worker process is SIGKILLed, as the out-of-memory killer would:
  the trial is retried from its checkpoint and finishes;
- ``node``: a two-node cluster on this machine, the worker node is SIGKILLed while its trial
  runs: the trial resumes on the other node;
- ``disk``: the run directory on a small tmpfs fills up: the error, whether results.parquet
  and the study still read, and ``--resume`` once the file system is enlarged (needs root).

    .venv/bin/python bench/faults.py [--cases baseline,driver,worker,node,disk] [--trials 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunetune.names import RESULT_FILE, RESULTS_FILE, TERMINATED  # noqa: E402
from prunetune.search._results import read_rows  # noqa: E402

BIN = Path(sys.executable).parent
#: The small file system of the disk case: room for the teacher and a few trials, not all of them.
DISK_MB = 700


def search_args(run_dir: Path, trials: int, *extra: str) -> list[str]:
    return [str(BIN / "prunetune"), "search", "quickstart", "--output", str(run_dir), "--no-wandb",
            "--set", f"search.num_trials={trials}", "--set", "search.retime=off", *extra]


def start(arguments: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(arguments, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def rows(run_dir: Path) -> list[dict]:
    return read_rows(run_dir / RESULTS_FILE)


def finished(run_dir: Path) -> list[str]:
    return [r["trial_id"] for r in rows(run_dir) if r["status"] == TERMINATED]


def running_trials(run_dir: Path) -> list[Path]:
    trials = run_dir / "trials"
    return [t for t in trials.iterdir() if not (t / RESULT_FILE).exists()] if trials.is_dir() else []


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)


def kill_tree(pid: int) -> None:
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in family:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def study_finished(run_dir: Path) -> int:
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run_dir / 'study.db'}")
    return sum(1 for t in study.trials if t.state.is_finished() and "duplicate_of" not in t.user_attrs)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the cases


def baseline(work: Path, trials: int) -> None:
    run_dir = work / "baseline"
    subprocess.run(search_args(run_dir, trials), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    done = finished(run_dir)
    per_trial = [du(run_dir / "trials" / t) + du(run_dir / "tune" / t) for t in done]
    models = [du(run_dir / "trials" / t / "model") for t in done]
    worst = max(size / (1.2 * model + 2e6) for size, model in zip(per_trial, models))
    print(f"baseline: {len(done)}/{trials} finished; per finished trial {max(per_trial) / 1e6:.1f} MB at most "
          f"(model {max(models) / 1e6:.1f} MB; worst size / (1.2 x model + 2 MB) = {worst:.2f}); "
          f"whole run directory {du(run_dir) / 1e6:.0f} MB ({du(run_dir / 'teacher') / 1e6:.0f} MB of it the teacher)")


def driver(work: Path, trials: int) -> None:
    run_dir = work / "driver"
    process = start(search_args(run_dir, trials), work / "driver.log")
    wait_for(lambda: len(finished(run_dir)) >= 1 and running_trials(run_dir), 900, "a finished and a running trial")
    time.sleep(5)
    before = {t: (run_dir / "trials" / t / RESULT_FILE).stat().st_mtime for t in finished(run_dir)}
    kill_tree(process.pid)
    subprocess.run([str(BIN / "prunetune"), "search", "--resume", str(run_dir), "--no-wandb"], cwd=REPO, check=True,
                   stdout=(work / "driver-resume.log").open("w"), stderr=subprocess.STDOUT)
    after = {t: (run_dir / "trials" / t / RESULT_FILE).stat().st_mtime for t in before}
    reran = [t for t in before if after[t] != before[t]]
    print(f"driver: killed with {len(before)} finished; after --resume {len(finished(run_dir))}/{trials} finished, "
          f"{len(rows(run_dir))} rows, {study_finished(run_dir)} finished trials in the study; finished trials that "
          f"ran again: {reran or 'none'}")


def worker(work: Path, trials: int) -> None:
    run_dir = work / "worker"
    process = start(search_args(run_dir, trials), work / "worker.log")
    wait_for(lambda: _trial_worker(process.pid) is not None, 900, "a running trial's worker")
    time.sleep(15)  # past its first checkpoint
    victim = _trial_worker(process.pid)
    described = f"{victim.pid} ({' '.join(victim.cmdline())[:40]})"
    os.kill(victim.pid, signal.SIGKILL)
    process.wait(timeout=1800)
    statuses = [r["status"] for r in rows(run_dir)]
    print(f"worker: killed process {described}; the search exited {process.returncode} with "
          f"{statuses.count(TERMINATED)}/{trials} finished and {statuses.count('ERROR')} errored")


def _trial_worker(driver_pid: int) -> psutil.Process | None:
    for child in psutil.Process(driver_pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()) or child.name().startswith("ray::ImplicitFunc"):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def node(work: Path, trials: int) -> None:
    from tests.cluster.test_two_nodes import TwoNodeCluster, cluster_env

    cluster = TwoNodeCluster()
    cluster.start()
    try:
        run_dir = work / "node"
        env = cluster_env()
        log = (work / "node.log").open("w")
        process = subprocess.Popen(search_args(run_dir, trials, "--address", cluster.address), cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: len(running_trials(run_dir)) >= 2, 900, "a trial on each node")
        time.sleep(20)
        cluster.kill_worker_node()
        process.wait(timeout=3600)
        statuses = [r["status"] for r in rows(run_dir)]
        print(f"node: worker node killed; the search exited {process.returncode} with "
              f"{statuses.count(TERMINATED)}/{trials} finished and {statuses.count('ERROR')} errored, "
              f"on {len({r['node_id'] for r in rows(run_dir)})} node(s)")
    finally:
        cluster.stop()


def disk(work: Path, trials: int) -> None:
    mount = Path(tempfile.mkdtemp(prefix="ptdisk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)]).returncode != 0:
        print("disk: cannot mount a small file system here (needs root): not run")
        return
    try:
        run_dir = mount / "run"
        failed = subprocess.run(search_args(run_dir, trials), cwd=REPO, capture_output=True, text=True)
        message = next((line for line in failed.stderr.splitlines() if "file system is full" in line), None)
        readable = f"{len(finished(run_dir))} rows finished, {study_finished(run_dir)} finished in the study"
        subprocess.run(["mount", "-o", "remount,size=4g", str(mount)], check=True)
        subprocess.run([str(BIN / "prunetune"), "search", "--resume", str(run_dir), "--no-wandb"], cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        print(f"disk: exit {failed.returncode}, error: {message!r}; still readable: {readable}; after enlarging and "
              f"--resume: {len(finished(run_dir))}/{trials} finished")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


CASES = {"baseline": baseline, "driver": driver, "worker": worker, "node": node, "disk": disk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("runs/faults"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    for name in args.cases.split(","):
        started = time.monotonic()
        CASES[name](args.work.resolve(), args.trials)
        print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
