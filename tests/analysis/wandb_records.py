"""Read a W&B offline run back: its ``.wandb`` record log and the files it references.

wandb 0.31 no longer ships a Python reader of its transaction log, so this follows its
documented format: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log
blocks of 32 KiB, each record a 7-byte header (CRC32 of type + data, length, type:
FULL/FIRST/MIDDLE/LAST) and a chunk of a serialised ``wandb.proto`` ``Record``.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    records, pending, pos = [], b"", HEADER.size
    while pos + RECORD_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:  # block trailer
            pos += left
            continue
        checksum, length, kind = RECORD_HEADER.unpack_from(data, pos)
        if pos + RECORD_HEADER.size + length > len(data):  # still being written
            break
        chunk = data[pos + RECORD_HEADER.size: pos + RECORD_HEADER.size + length]
        pos += RECORD_HEADER.size + length
        if kind == 0 and length == 0:
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == checksum, "corrupt record"
        if kind == FULL:
            records.append(_parse(chunk))
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(_parse(pending + chunk))
    return records


def _parse(payload: bytes) -> pb.Record:
    record = pb.Record()
    record.ParseFromString(payload)
    return record


def read_finished_records(path: Path, timeout: float = 20.0) -> list[pb.Record]:
    """The records of a finished run. wandb's service writes the log in the background and may
    still be flushing it when ``finish()`` returns, so wait for the closing ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


class OfflineRun:
    """The pieces of one offline run a test looks at."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        (self.log,) = self.dir.glob("run-*.wandb")
        self.records = read_finished_records(self.log)

    def of_kind(self, kind: str) -> list:
        return [getattr(r, kind) for r in self.records if r.WhichOneof("record_type") == kind]

    @property
    def run(self):
        (run,) = self.of_kind("run")
        return run

    @property
    def config(self) -> dict:
        values = {}
        for item in self.run.config.update:
            values[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        for config in self.of_kind("config"):
            for item in config.update:
                values[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        return values

    @property
    def history(self) -> list[dict]:
        rows = []
        for history in self.of_kind("history"):
            row = {}
            for item in history.item:
                _set(row, list(item.nested_key) or [item.key], json.loads(item.value_json))
            rows.append(row)
        return rows

    @property
    def summary(self) -> dict:
        values = {}
        for summary in self.of_kind("summary"):
            for item in summary.update:
                _set(values, list(item.nested_key) or [item.key], json.loads(item.value_json))
        return values

    def table(self, key: str) -> dict:
        """A logged wandb.Table, read from the file its history entry points to."""
        entry = next(row[key] for row in self.history if key in row)
        assert entry["_type"] == "table-file", entry
        return json.loads((self.dir / "files" / entry["path"]).read_text())


def _set(target: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    return [OfflineRun(d) for d in sorted((Path(run_dir) / "wandb").glob("offline-run-*"))]
