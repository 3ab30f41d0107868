"""A real two-node Ray cluster on this machine: `prunetune search --address` spreads trials over both.

The nodes share a private Ray temp dir, which names every process they start; the test
stops exactly those processes (and their children) by process id: ``ray stop`` would stop
every Ray process of the user on the machine. Set PRUNETUNE_SKIP_CLUSTER_TESTS=1 to skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from prunetune.search._results import WORKER_LOST
from tests.search.test_end_to_end import tiny_search_yaml

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("PRUNETUNE_SKIP_CLUSTER_TESTS") == "1",
                       reason="PRUNETUNE_SKIP_CLUSTER_TESTS=1"),
]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env() -> dict[str, str]:
    # Ray never sends its token to an explicit address unless told to: the cluster started
    # below uses the user's token (~/.ray/auth_token), and so do the joining node and driver.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO)}


#: The custom resource only the second node has: it stands in for a deploy node (search.measure_on).
DEPLOY = "deploy_cpu"


class TwoNodeCluster:
    """``ray start --head`` on a free port plus one ``ray start --address``, one CPU each; the
    second node also has one DEPLOY resource."""

    def __init__(self):
        # Short: Ray's unix socket paths must fit in 107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="ptray-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        common = ["--num-cpus=1", "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                  "--include-dashboard=false", *common)
        head = {p.pid for p in self.processes()}
        self._ray("start", f"--address={self.address}", f"--resources={{\"{DEPLOY}\": 1}}", *common)
        self.worker_roots = [p for p in self.processes() if p.pid not in head]
        deadline = time.monotonic() + 60
        while self.alive_nodes() < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the second node did not join {self.address}")
            time.sleep(1)

    def _ray(self, *arguments: str) -> None:
        subprocess.run([str(BIN / "ray"), *arguments], env=cluster_env(), check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def alive_nodes(self) -> int:
        status = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"], env=cluster_env(),
                                capture_output=True, text=True, timeout=60)
        return status.stdout.count(" node_")

    def processes(self) -> list[psutil.Process]:
        """Every process of the two nodes: those naming our temp dir, and their children."""
        own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        roots = [p for p in psutil.process_iter(["cmdline"])
                 if p.pid not in own and any(self.temp_dir in part for part in p.info["cmdline"] or ())]
        family: dict[int, psutil.Process] = {}
        for root in roots:
            for process in (root, *root.children(recursive=True)):
                family[process.pid] = process
        return list(family.values())

    def kill_worker_node(self) -> None:
        """SIGKILL the second node: its own processes and everything they started."""
        family = []
        for root in self.worker_roots:
            try:
                family += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for process in family:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        _wait_gone(family, timeout=10)

    def stop(self) -> None:
        processes = self.processes()
        for signal_number, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            for process in processes:
                try:
                    process.send_signal(signal_number)
                except psutil.NoSuchProcess:
                    pass
            processes = _wait_gone(processes, timeout=grace)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _running(process: psutil.Process) -> bool:
    # A zombie is gone for our purpose: only its parent (not us) can reap it.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(processes: list[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture
def two_nodes():
    cluster = TwoNodeCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
    assert not [p for p in cluster.processes() if _running(p)], "a process of the test cluster survived"


def test_search_on_a_two_node_cluster_measures_on_the_deploy_node(two_nodes, tmp_path, tiny_model_dir,
                                                                   tiny_dataset_csv):
    """Trials spread over both nodes; every latency figure comes from the node with the deploy
    resource; when that node is lost, the measurements that needed it fail clearly and the search
    still finishes."""
    raylets = [p for p in two_nodes.processes() if p.name() == "raylet"]
    assert len(raylets) == 2  # what the fixture will stop, by process id

    config = tiny_search_yaml(tmp_path, tiny_model_dir, tiny_dataset_csv, num_trials=4, retime="all",
                              measure_on={"resources": {DEPLOY: 1}})
    run_dir = tmp_path / "run"
    search = subprocess.Popen(
        [str(BIN / "prunetune"), "search", config, "--address", two_nodes.address, "--output", str(run_dir),
         "--no-wandb"], env=cluster_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and search.poll() is None and _finished(run_dir) < 2:
        time.sleep(0.5)
    assert search.poll() is None, "the search ended before the deploy node could be lost: " + search.stdout.read()[-3000:]
    deploy_node = _node_of_trials(run_dir)
    two_nodes.kill_worker_node()
    output, _ = search.communicate(timeout=300)
    assert search.returncode == 0, output[-4000:]

    rows = pq.read_table(run_dir / "results.parquet").to_pandas()
    finished, failed = rows[rows["status"] == "TERMINATED"], rows[rows["status"] != "TERMINATED"]
    assert len(finished) >= 2 and len(rows) == 4, rows[["status", "error"]]
    assert rows["node_id"].nunique() == 2, "trials ran on one node only"
    assert set(finished["latency_node"]) == {deploy_node}, finished[["node_id", "latency_node"]]
    assert finished["latency_hardware"].str.contains("CPUs").all()
    # Losing the deploy node fails the measurements that needed it, and any trial whose worker ran there.
    assert all("MeasureNodeError: search.measure_on" in error or error.startswith(WORKER_LOST)
               for error in failed["error"]), failed["error"]
    assert f"4 trials ({len(failed)} failed)" in output


def _finished(run_dir: Path) -> int:
    if not (run_dir / "results.parquet").is_file():
        return 0
    try:
        rows = pq.read_table(run_dir / "results.parquet").to_pandas()
    except Exception:  # being written
        return 0
    return int((rows["status"] == "TERMINATED").sum())


def _node_of_trials(run_dir: Path) -> str:
    rows = pq.read_table(run_dir / "results.parquet").to_pandas()
    nodes = set(rows.loc[rows["status"] == "TERMINATED", "latency_node"])
    assert len(nodes) == 1, nodes
    return nodes.pop()


DRIVER = """
import sys
from prunetune.search import run_search
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

config = synthetic_config(sampler="random", num_trials=4, max_concurrent=2, reuse_actors=False, verbosity=1)
outcome = run_search(config, run_dir=sys.argv[1], address=sys.argv[2], teacher_fn=synthetic_teacher,
                     trial_fn=SyntheticTrial(steps=6, seconds_per_step=0.5))
print(f"finished {outcome.num_trials} failed {outcome.num_failed}")
"""


def _checkpointed(run_dir: Path) -> int:
    """Trials of which Tune holds a checkpoint."""
    return len({path.parent.name for path in (run_dir / "tune").glob("*/checkpoint_*/state.json")})


def test_a_lost_worker_node_costs_its_trial_nothing_but_time(two_nodes, tmp_path):
    run_dir = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(run_dir), two_nodes.address], env=cluster_env(),
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        started = list((run_dir / "trials").glob("*/starts.log")) if run_dir.exists() else []
        if len(started) >= 2:  # a trial runs on each node
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the search ended before a node could be lost"
    # Both past their first checkpoint (Tune's copy), so the lost one has one to resume from.
    while time.monotonic() < deadline and driver.poll() is None and _checkpointed(run_dir) < 2:
        time.sleep(0.2)
    two_nodes.kill_worker_node()
    output, _ = driver.communicate(timeout=240)
    assert driver.returncode == 0, output[-4000:]
    assert "finished 4 failed 0" in output, output[-2000:]
    rows = pq.read_table(run_dir / "results.parquet").to_pandas()
    assert len(rows) == 4 and set(rows["status"]) == {"TERMINATED"}
    starts = {t.name: (t / "starts.log").read_text().split() for t in (run_dir / "trials").iterdir()}
    moved = [steps for steps in starts.values() if len(steps) > 1]
    assert moved and all(int(steps[-1]) >= 1 for steps in moved), starts  # resumed from its checkpoint
