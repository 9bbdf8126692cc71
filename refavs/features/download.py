"""Fetching weight files once: a local path is used as it is, a URL is downloaded to a cache.

The cache folder is ``$REFAVS_CACHE`` when set, else ``~/.cache/refavs``. Downloads go to a
temporary file in that folder and are renamed into place only when complete, so an
interrupted download never leaves a truncated file that a later run would trust. When the
file name carries a hash prefix in the torch hub style (``name-<hex>.pth``), the download's
SHA-256 must start with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")


def cache_root() -> Path:
    """Where downloaded weights are kept (``$REFAVS_CACHE`` or ``~/.cache/refavs``)."""
    env = os.environ.get("REFAVS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refavs"


def is_url(spec: str) -> bool:
    return urllib.parse.urlparse(spec).scheme in ("http", "https", "ftp")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(spec: str, what: str = "weights", subdir: str = "weights") -> Path:
    """A local file for ``spec``: the path itself, or the cached download of a URL.

    Raises FileNotFoundError (local path missing) or OSError (download failed), each naming
    ``what`` and the path or URL.
    """
    if not is_url(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path} does not exist")
        return path
    name = Path(urllib.parse.urlparse(spec).path).name or "download"
    folder = cache_root() / subdir
    target = folder / name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(spec, timeout=60) as response:  # noqa: S310 - user-given URL
                while block := response.read(1 << 20):
                    out.write(block)
        match = _HASH_IN_NAME.search(name)
        if match and not sha256_file(Path(tmp)).startswith(match.group(1)):
            raise OSError(f"{what}: the download of {spec} does not match the hash {match.group(1)} in its name")
        os.replace(tmp, target)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and not str(err).startswith(what):
            raise OSError(f"{what}: cannot download {spec} ({err}); download it by hand and put it at "
                          f"{target} (then every command finds it there, under the same cache key), or pass "
                          f"its local path") from None
        raise
    return target


def file_fingerprint(spec: str | None) -> str:
    """A short identity for a weights spec: the URL itself, or a local file's SHA-256 prefix."""
    if spec is None:
        return "random"
    if is_url(spec):
        return spec
    path = Path(spec).expanduser()
    return f"sha256:{sha256_file(path)[:16]}" if path.is_file() else f"missing:{path}"
