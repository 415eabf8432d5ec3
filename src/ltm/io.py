"""Atomic file writes and content hashes.

Every artifact is written to a temporary sibling and renamed into place, so a killed stage never
leaves a half-written file that looks valid.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ltm.errors import LtmError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path) -> Path:
    """.NAME.<pid>.<random>.tmp beside `path`; those of dead processes are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync and rename it onto `path`."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


OWNER_FILE = ".ltm-owner"  # names the stage whose artifact a folder is
LOCK_FILE = ".ltm-lock"  # held by the one process writing a folder (`exclusive`)


def folder_owner(path: Path) -> str | None:
    """The stage that made folder `path`: its owner mark, or (older artifacts) its lineage record."""
    mark = path / OWNER_FILE
    if mark.is_file():
        return mark.read_text(encoding="utf-8").strip()
    record = path / "lineage.json"
    if record.is_file():
        try:
            return str(read_json(record).get("stage"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_out_folder(path: Path) -> None:
    """A stage that writes files into `path` (never replacing the folder) refuses at once when it is a file."""
    if path.exists() and not path.is_dir():
        raise LtmError(f"refusing to write into {path}: it is a file, not an output folder")


def check_replaceable(path: Path, owner: str) -> None:
    """Refuse to replace anything but a missing or empty folder or `owner`'s own earlier artifact."""
    if not path.exists():
        return
    if not path.is_dir():
        raise LtmError(f"refusing to replace {path}: it is a file, not an output folder")
    if any(path.iterdir()) and folder_owner(path) != owner:
        raise LtmError(f"refusing to replace {path}: it is not empty and not an earlier {owner} output "
                       "(choose a new or empty folder)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dir(path: Path) -> None:
    """Undo what a kill during `atomic_dir` left behind, before anything else touches `path`.

    Killed between its two renames, the previous folder sits at .NAME.old and NAME is missing: put
    it back. Temp folders .NAME.<pid>.*.tmp of processes that no longer exist are deleted."""
    old = path.with_name(f".{path.name}.old")
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)  # the new folder is complete: the old one is spent
        else:
            os.replace(old, path)
    remove_dead_temps(path)


def remove_dead_temps(path: Path) -> None:
    """Delete the temp files and folders .NAME.<pid>.*.tmp that killed processes left beside `path`."""
    for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, owner: str) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; on success it replaces `path` as a whole.

    Only a missing or empty folder, or one this same `owner` (a stage name) made before, is replaced:
    an output path can never destroy what it does not own. The folder is marked with its owner.
    Replacement is two renames (NAME -> .NAME.old, temp -> NAME); a kill between them is undone by the
    next start (`recover_dir`), so the previous copy is never lost."""
    path = Path(path)
    recover_dir(path)
    check_replaceable(path, owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        (tmp / OWNER_FILE).write_text(owner + "\n", encoding="utf-8")
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an OS lock on `folder` (its LOCK_FILE) for one writer at a time; the OS releases it when
    the process dies, so a killed run never blocks the next one."""
    import fcntl

    folder = Path(folder)
    made = []  # the folders this call creates, deepest first
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        made.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LtmError(f"{folder} is being written by {holder}; wait for it or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            # a command refused before writing anything leaves no folder behind
            if made and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                (folder / LOCK_FILE).unlink()
                for empty in made:
                    with contextlib.suppress(OSError):  # someone else wrote there meanwhile: keep it
                        empty.rmdir()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
