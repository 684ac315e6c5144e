"""Downloads that are verified and atomic: a file appears under its final name complete and checked, or not at all."""

import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from litlab.runs import atomic_file

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and the file."""


def download(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60,
    check: Callable[[BinaryIO], None] | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary file, checking length and checksum before ``os.replace``.

    Without a checksum, ``check`` reads the file first: the reader's own test of its format,
    raising a ``ValueError`` that says what the file "is" (``not a gzip file``). A server's HTML
    page, or a body cut short without a Content-Length, would otherwise be kept under the final
    name, and every later run would fail on it until it was deleted by hand.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashes = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256)) if want}
    try:
        size = 0
        # A check failing inside atomic_file removes the partial file; dest is never half-written.
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_file(dest, "w+b") as f:
            expected = response.headers.get("Content-Length")
            while chunk := response.read(CHUNK):
                f.write(chunk)
                size += len(chunk)
                for h in hashes.values():
                    h.update(chunk)
            if expected is not None and size != int(expected):
                raise DownloadError(f"download of {url} to {dest} was truncated: {size} of {expected} bytes")
            for name, want in (("md5", md5), ("sha256", sha256)):
                got = hashes[name].hexdigest() if want else None
                if want and got != want.lower():
                    raise DownloadError(
                        f"download of {url} to {dest} failed its {name} check: expected {want}, got {got}"
                    )
            if check is not None and not hashes:  # a checksum proves more than a format can
                f.seek(0)
                try:
                    check(f)
                except ValueError as e:
                    sent = response.headers.get("Content-Type", "")
                    sent = f" (the server sent {sent.split(';')[0]})" if sent.startswith("text/") else ""
                    raise DownloadError(f"download of {url} to {dest} is {e}{sent}; it was not kept") from None
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} to {dest} failed: HTTP {e.code} {e.reason}") from None
    except http.client.IncompleteRead as e:
        raise DownloadError(f"download of {url} to {dest} was truncated: {e}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"download of {url} to {dest} failed: {e}") from None
    return dest
