"""The key that signs upload URLs: made once per registry, readable by its owner only.

Whoever knows the key can forge an upload URL, so a key file that is empty or short (a
first start that failed half-way, a hand edit) stops the server instead of being used. A new
key is written to a temporary file and then linked into place, so the key file is never
seen half-written; when several processes start at once, the first key linked wins and the
others read it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from fdp_tasks.errors import BadInput, FdpError, os_error_text

KEY_FILE = ".secret"
MIN_KEY_BYTES = 32
NEW_KEY_BYTES = 32  # written as 64 hex characters


def signing_key(path: Path) -> bytes:
    """The key kept in `path`, made there first if there is none."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        return _make_key(path)
    except OSError as exc:
        raise FdpError(f"cannot read the upload signing key: {os_error_text(exc)}") from None
    if len(key) < MIN_KEY_BYTES:
        found = "is empty" if not key else f"holds only {len(key)} bytes"
        raise BadInput(
            f"{path}: the upload signing key {found}; expected at least {MIN_KEY_BYTES}. "
            "Delete the file to have a new key made (upload URLs handed out before then "
            "stop working)"
        )
    if os.name != "nt" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return key


def _make_key(path: Path) -> bytes:
    key = secrets.token_hex(NEW_KEY_BYTES).encode("ascii")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".new", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:  # mkstemp: mode 0600 from the start
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            return signing_key(path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
            tmp = None
    except OSError as exc:
        raise FdpError(f"cannot write the upload signing key: {os_error_text(exc)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return key
