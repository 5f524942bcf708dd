"""File helpers shared by all stages: atomic writes, text decoding, params."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from pipeline.errors import StanceError

MAX_TEXT_BYTES = 20 * 1024 * 1024  # 20 MB: larger "documents" are archives, not op-eds
FALLBACK_ENCODING = "cp1252"  # Windows-1252: what most non-UTF-8 saved web pages actually are


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the result the usual umask permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def merge_json_atomic(path: str | Path, sections: dict) -> dict:
    """Set top-level `sections` of the JSON object in `path`, keeping its other keys (a missing or
    unreadable file starts empty); written atomically. Returns the merged object."""
    path = Path(path)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = {}
    merged = {**(current if isinstance(current, dict) else {}), **sections}
    write_json_atomic(path, merged)
    return merged


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decode_text(data: bytes, name: str, notes: list[str] | None = None) -> str:
    """Decode bytes as UTF-8 (BOM allowed), else Windows-1252; refuse binary data.

    Binary means a NUL byte or more than 10% control characters; such input is refused
    rather than scored as gibberish. When the Windows-1252 fallback is used, a one-line note
    naming `name` is appended to `notes` (the caller decides whether to show it).
    """
    if b"\x00" in data[:8192]:
        raise StanceError(f"{name}: binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode(FALLBACK_ENCODING)
        except UnicodeDecodeError:
            raise StanceError(f"{name}: not UTF-8 or {FALLBACK_ENCODING} text") from None
        if notes is not None:  # a wrong guess garbles quotes and accents: the reader should know
            notes.append(f"{name}: not UTF-8; read as Windows-1252")
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if sample and controls / len(sample) > 0.1:
        raise StanceError(f"{name}: binary file (control characters), not text")
    return text


def read_text_file(path: str | Path) -> str:
    """Read a text document with a clear error for missing, huge, binary or undecodable files."""
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: no such file")
    if path.is_dir():
        raise StanceError(f"{path}: is a directory")
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise StanceError(f"{path}: {size / 1e6:.0f} MB is too large for a document (limit {MAX_TEXT_BYTES // 2**20} MB)")
    return decode_text(path.read_bytes(), str(path))


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise StanceError(f"{path}: params file not found (run from the project root)")
    try:
        params = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise StanceError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise StanceError(f"{path}: expected a mapping of settings")
    return params


def json_error(exc: json.JSONDecodeError) -> str:
    """The whole message of a JSON error on one line of a JSON-lines file, led by its column."""
    return f"invalid JSON at column {exc.colno} ({exc})"


def read_jsonl(path: str | Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                # without its line break, which would turn an unclosed string into "invalid control character"
                records.append(json.loads(line.rstrip("\r\n")))
            except json.JSONDecodeError as exc:
                raise StanceError(f"{path}:{number}: {json_error(exc)}") from None
    return records


def write_jsonl_atomic(path: str | Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
