"""A reader of W&B's offline run file (``run-*.wandb``), written from its documented format.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB
blocks of chunks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle,
4 last); a block tail shorter than a header is zero padding. Chunks join into protobuf
``Record``s. Recent W&B releases moved their own reader out of Python, so tests use this one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def read_records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += room  # zero padding up to the block end
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
            pending = b""
    return records


def wait_until_complete(run_dir: Path, timeout: float = 60.0) -> None:
    """Waits until every offline run file of a run folder holds its ``exit`` record: W&B's service may still be
    writing the file when ``finish()`` has returned (seen for a second run in the same process)."""
    import time

    from wandb.proto import wandb_internal_pb2

    def complete(path: Path) -> bool:
        for raw in read_records(path):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(raw)
            if rec.WhichOneof("record_type") == "exit":
                return True
        return False

    deadline = time.time() + timeout
    while time.time() < deadline:  # (the file itself may not exist yet)
        files = list(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
        if files and all(complete(f) for f in files):
            return
        time.sleep(0.5)


def summarize(run_dir: Path) -> tuple[set[str], dict, int]:
    """History keys, config values and number of logged PNGs of the offline W&B runs of a run folder."""
    from wandb.proto import wandb_internal_pb2

    wait_until_complete(run_dir)
    keys, config = set(), {}
    for wandb_file in Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"):
        for raw in read_records(wandb_file):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                keys.update(item.key or "/".join(item.nested_key) for item in rec.history.item)
            elif kind in ("config", "run"):
                updates = rec.config.update if kind == "config" else rec.run.config.update
                for item in updates:
                    config[item.key] = json.loads(item.value_json)
    images = len(list(Path(run_dir).glob("wandb/offline-run-*/files/media/images/**/*.png")))
    return keys, config, images
