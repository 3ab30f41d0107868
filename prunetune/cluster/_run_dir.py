"""The run directory, where every node finds the teacher and writes its trials.

A run directory is a local path (on one machine, or a file system every node mounts) or
an object-store URI (``s3://bucket/runs/x``, ``gs://...``) reached through pyarrow's file
systems. Work always happens in a local directory: the run directory itself when it is
local, otherwise a per-node mirror under the prunetune cache that is pushed to and pulled
from the URI. The object is small and picklable, so trainables receive it from the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from prunetune.errors import ConfigError
from prunetune.names import (
    LOCK_FILE,
    LOCK_OWNER_FILE,
    MODEL_DIR,
    RESULT_FILE,
    STUDY_FILE,
    TEACHER_DIR,
    TRIALS_DIR,
    TUNE_DIR,
)


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def cache_home() -> Path:
    return Path(os.environ.get("PRUNETUNE_CACHE", Path.home() / ".cache" / "prunetune"))


def _holder(owner: Path) -> str:
    try:
        held = json.loads(owner.read_text())
    except (OSError, ValueError):
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("since", 0)))
    return f"process {held.get('pid')} on host {held.get('host')}, since {since}"


class RunDir:
    """A run directory; ``local`` is where this node reads and writes its files.

    For a URI, ``mirror`` names the local copy; by default each node keeps it under its own
    prunetune cache (``PRUNETUNE_CACHE``, else ``~/.cache/prunetune``), resolved on that node.
    """

    def __init__(self, location: str | os.PathLike, *, mirror: str | os.PathLike | None = None):
        text = str(location)
        self._mirror = Path(mirror) if mirror is not None else None
        if is_uri(text):
            self.location = text.rstrip("/")
        else:
            self.location = str(Path(text).expanduser().resolve())

    @property
    def local(self) -> Path:
        if not self.is_remote:
            return Path(self.location)
        if self._mirror is not None:
            return self._mirror
        return cache_home() / "runs" / hashlib.sha256(self.location.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"RunDir({self.location!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.location == self.location

    @property
    def is_remote(self) -> bool:
        return is_uri(self.location)

    # ------------------------------------------------------------------ paths

    def join(self, *parts: str) -> str:
        """The location of ``parts`` as the user names it: a path, or a URI."""
        return "/".join([self.location, *parts]) if self.is_remote else str(self.local.joinpath(*parts))

    def local_path(self, *parts: str) -> Path:
        return self.local.joinpath(*parts)

    def trial_location(self, trial_id: str) -> str:
        return self.join(TRIALS_DIR, trial_id)

    def trial_output_dir(self, trial_id: str) -> Path:
        """The local directory a trial writes (result.json, model/, checkpoint/)."""
        path = self.local_path(TRIALS_DIR, trial_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def study_url(self) -> str:
        """The default Optuna storage: SQLite in the (local mirror of the) run directory."""
        return f"sqlite:///{self.local_path(STUDY_FILE)}"

    @property
    def tune_path(self) -> str:
        """Ray Tune's experiment directory; Tune itself reaches URIs through pyarrow."""
        return self.join(TUNE_DIR)

    # ------------------------------------------------------------------ object stores

    def _remote(self, *parts: str):
        """The object store's file system, and the path of ``parts`` on it."""
        import pyarrow.fs

        fs, root = pyarrow.fs.FileSystem.from_uri(self.location)
        return fs, "/".join([root, *parts])

    def exists(self, *parts: str) -> bool:
        if not self.is_remote:
            return self.local_path(*parts).exists()
        import pyarrow.fs

        fs, path = self._remote(*parts)
        return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def listdir(self, *parts: str) -> list[str]:
        """The names in a folder of the run directory (local or at the URI); empty when absent."""
        if not self.is_remote:
            folder = self.local_path(*parts)
            return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        import pyarrow.fs

        fs, path = self._remote(*parts)
        selector = pyarrow.fs.FileSelector(path, allow_not_found=True)
        return sorted(info.base_name for info in fs.get_file_info(selector))

    def read_bytes(self, *parts: str) -> bytes:
        """A file of the run directory (local or at the URI), read where it lies."""
        if not self.is_remote:
            return self.local_path(*parts).read_bytes()
        fs, path = self._remote(*parts)
        with fs.open_input_stream(path) as stream:
            return stream.readall()

    def move(self, source: tuple[str, ...], target: tuple[str, ...]) -> None:
        """Move a file within the run directory (local or at the URI)."""
        if not self.is_remote:
            self.local_path(*target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.local_path(*source), self.local_path(*target))
            return
        fs, destination = self._remote(*target)
        fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
        fs.move(self._remote(*source)[1], destination)

    def push(self, *parts: str) -> None:
        """Upload a local file or folder to the URI (nothing to do for a local run directory)."""
        source = self.local_path(*parts)
        if not self.is_remote or not source.exists():
            return
        import pyarrow.fs

        fs, destination = self._remote(*parts)
        if source.is_dir():
            fs.create_dir(destination, recursive=True)
        else:
            fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
        pyarrow.fs.copy_files(str(source), destination, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=fs)

    def pull(self, *parts: str) -> bool:
        """Download a file or folder from the URI into the local mirror; False when absent."""
        if not self.is_remote:
            return self.local_path(*parts).exists()
        if not self.exists(*parts):
            return False
        import pyarrow.fs

        fs, source = self._remote(*parts)
        target = self.local_path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(source, str(target), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        return True

    # ------------------------------------------------------------------ one search at a time

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for one search; a second one is refused, naming the holder.

        An operating-system lock: a driver that dies (even killed) lets go of it. For an
        object-store run directory it guards this machine's mirror only.
        """
        from filelock import FileLock, Timeout

        self.local.mkdir(parents=True, exist_ok=True)
        owner = self.local_path(LOCK_OWNER_FILE)
        lock = FileLock(str(self.local_path(LOCK_FILE)))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"run directory {self.location} is in use by another search ({_holder(owner)}); "
                              "wait for it to end, or choose another run directory") from None
        try:
            owner.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
            yield
        finally:
            owner.unlink(missing_ok=True)
            lock.release()

    # ------------------------------------------------------------------ what trials need

    def teacher_cache_dir(self) -> str:
        """The teacher cache on this node; for a URI, pulled once per node (trials wait on a lock)."""
        local = self.local_path(TEACHER_DIR)
        if self.is_remote:
            from filelock import FileLock

            local.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(local) + ".lock"):
                if not local.is_dir():
                    self.pull(TEACHER_DIR)
        return str(local)

    def publish_trial(self, trial_id: str) -> None:
        """Make a trial's result and model reachable from every node (checkpoints travel through Tune)."""
        for name in (RESULT_FILE, MODEL_DIR):
            self.push(TRIALS_DIR, trial_id, name)

    def finished_result(self, trial_id: str) -> dict[str, Any] | None:
        """The final metrics of a trial that already finished (its result.json), else None."""
        path = self.local_path(TRIALS_DIR, trial_id, RESULT_FILE)
        if not path.is_file() and not self.pull(TRIALS_DIR, trial_id, RESULT_FILE):
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        metrics = data.get("metrics", data) if isinstance(data, dict) else None
        return metrics if isinstance(metrics, dict) else None
