"""Make an attachment's filename safe for any file system and as an object-key component.

``safe_filename`` keeps the name recognisable (the same letters, the extension kept) and
guarantees: never empty; no path separator, control or format character (such as the
right-to-left override used to disguise ``exe`` files), nor ``: * ? " < > |``; no leading
dot or space and no trailing dot or space; not a reserved Windows device name (``CON``,
``nul.txt``, ``COM1``...); NFC-normalised; at most ``MAX_FILENAME_BYTES`` bytes of UTF-8.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_BYTES = 200

_REPLACED = frozenset('/\\:*?"<>|')
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,16}$")
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/ms-tnef": ".dat",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "text/rfc822-headers": ".txt",
}


def safe_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """A safe form of ``name``; ``attachment`` plus an extension for the type when none is left."""
    name = name or ""
    if len(name) > 4 * MAX_FILENAME_BYTES:  # bound the work; the end holds the extension
        name = name[: 2 * MAX_FILENAME_BYTES] + name[-32:]
    text = _stripped(_replaced(unicodedata.normalize("NFC", name)))
    if not text:
        return "attachment" + _EXTENSIONS.get(content_type, ".bin")
    stem = text.split(".", 1)[0].rstrip(" ")
    if _RESERVED.fullmatch(stem):
        text = "_" + text
    return _shortened(text)


def _replaced(name: str) -> str:
    """Every unsafe character as "_", runs of white space as one space."""
    chars = [
        "_" if char in _REPLACED or unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        for char in name
    ]
    return _SPACES.sub(" ", "".join(chars))


def _stripped(name: str) -> str:
    """No leading dots or spaces (hidden files, "..") and no trailing ones (Windows drops them)."""
    return name.lstrip(". ").rstrip(". ")


def _shortened(name: str) -> str:
    """At most MAX_FILENAME_BYTES of UTF-8, cut inside the stem so the extension survives."""
    if len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    match = _EXTENSION.search(name)
    extension = match.group() if match else ""
    stem = name[: len(name) - len(extension)]
    room = MAX_FILENAME_BYTES - len(extension)
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
    return (cut or "attachment") + extension
