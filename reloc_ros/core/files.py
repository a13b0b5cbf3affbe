"""Files that never end half-written, and fingerprints of tensors.

Every output of the project (model files, databases, checkpoints, reports) is written to a
temporary file in the same folder, flushed to disk and renamed over the destination, so a
crash leaves either the old file or the new one, never a truncated one. torch is imported
only by the functions that need it, so text reports cost no torch import.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, IO

if TYPE_CHECKING:
    import torch

__all__ = ["FileProblem", "version_problem", "atomic_write", "atomic_save", "atomic_write_text", "tensor_fingerprint",
           "load_torch_file", "load_container"]

log = logging.getLogger(__name__)


class FileProblem(RuntimeError):
    """A file that cannot be used (missing, corrupt, foreign, mismatched). ``str(err)`` is one
    line: ``"<path>: <problem>"``; ``err.path`` and ``err.problem`` hold the two parts."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary binary file beside ``path``, fsync, rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: Path | str) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch  # lazy: the text writers here need no torch

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 text to ``path``, atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def tensor_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of named tensors (order-independent).

    The model file fingerprints its weights with it, the database checks its own tensors.
    """
    import torch  # lazy: the text writers here need no torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_torch_file(path: Path | str, error: Callable[[Path, str], Exception], what: str,
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a one-line error that a user can act on.

    Args:
        path: the file.
        error: ``error(path, problem)`` builds the exception to raise (e.g. ``ModelFileError``).
        what: what the file should be, for the messages ("model file", "database file").
        map_location: as ``torch.load``.

    Raises:
        whatever ``error`` builds: the file is missing, not a regular file (a directory, a
        FIFO, ...), unreadable (the system's reason), empty, truncated or not a torch file.
        The library's own text goes to the debug log, not into the message.
    """
    import torch  # lazy: the text writers here need no torch

    path = Path(path)
    problem = _not_a_readable_file(path, what)
    if problem:
        raise error(path, problem)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(path, f"cannot read the {what} ({e.strerror or type(e).__name__})") from None
    if not data:
        raise error(path, f"{what} is empty (0 bytes)")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # zip/pickle errors of all kinds
        log.debug("torch.load(%s) failed: %s: %s", path, type(e).__name__, e)
        if data[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(io.BytesIO(data)):
            problem = f"{what} is truncated ({len(data)} bytes; the archive's end is missing)"
        elif data[:4] != b"PK\x03\x04":
            problem = f"not a {what} (not a torch archive; {len(data)} bytes)"
        else:
            problem = f"{what} is corrupt ({type(e).__name__} while reading it)"
        raise error(path, problem) from None


def _not_a_readable_file(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be read as a file (it does not exist, is a directory or another
    kind of special file, or cannot be looked at), or None when it is a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{what} does not exist"
    except OSError as e:
        return f"cannot read the {what} ({e.strerror or type(e).__name__})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for is_kind, name in kinds if is_kind(mode)), "a special file")
    return f"is {kind}, not a {what}"


def version_problem(what: str, found, version: int, rebuild: str) -> str | None:
    """The one-line problem of a file whose format version is not ``version`` (None if it is).

    Args:
        what: what the file is ("model file").
        found: the version the file carries (None: none).
        version: the version this code reads and writes.
        rebuild: the command that writes the file anew (e.g. "python -m reloc_train.train").
    """
    if found == version:
        return None
    age = "newer" if isinstance(found, int) and found > version else "older"
    return (f"{what} format version {found} is {age} than the one this code reads ({version}); "
            f"write it again with {rebuild}" + (" or update reloc_ros" if age == "newer" else ""))


def load_container(path: Path | str, error: Callable[[Path, str], Exception], what: str, fmt: str, version: int,
                   map_location: str | torch.device = "cpu", rebuild: str = "") -> dict:
    """:func:`load_torch_file`, then check that it is a dict of format ``fmt``, version ``version``.

    Args:
        path, error, what, map_location: as :func:`load_torch_file`.
        fmt: the expected ``payload["format"]`` (e.g. ``"reloc_ros.model"``).
        version: the expected ``payload["format_version"]``.
        rebuild: the command that writes such a file anew, named by the version error.
    """
    path = Path(path)
    payload = load_torch_file(path, error, what, map_location)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise error(path, f"not a reloc_ros {what} (format {got!r}, expected {fmt!r})")
    problem = version_problem(what, payload.get("format_version"), version, rebuild or "the command that made it")
    if problem:
        raise error(path, problem)
    return payload
