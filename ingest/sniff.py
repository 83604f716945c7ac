"""Tell a file's real type from its first bytes (magic numbers), without libmagic.

``sniff`` answers a MIME type or None. It reads at most the first ``_HEAD`` bytes, so it
costs the same for a 1 KB logo and a 100 MB video, and it never raises. The table covers
what mail carries: documents, images, archives, executables, audio and video, TNEF,
calendars and HTML; anything else that decodes as UTF-8 text is ``text/plain``.
"""

from __future__ import annotations

import re

_HEAD = 4096

# (offset, magic bytes, type): checked in order, so specific entries come before general ones.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"8BPS", "image/vnd.adobe.photoshop"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (0, b"\x78\x9f\x3e\x22", "application/ms-tnef"),
    (0, b"{\\rtf", "application/rtf"),
    (0, b"%!PS", "application/postscript"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (257, b"ustar", "application/x-tar"),
    (0, b"MSCF", "application/vnd.ms-cab-compressed"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"\xca\xfe\xba\xbe", "application/java-vm"),
    (0, b"\x00asm", "application/wasm"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"wOFF", "font/woff"),
    (0, b"wOF2", "font/woff2"),
    (0, b"-----BEGIN PGP MESSAGE", "application/pgp-encrypted"),
    (0, b"-----BEGIN PGP SIGNATURE", "application/pgp-signature"),
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP = {b"qt  ": "video/quicktime", b"heic": "image/heic", b"heix": "image/heic"}
_FTYP |= {b"mif1": "image/heif", b"avif": "image/avif", b"M4A ": "audio/mp4"}
_ZIP_MEMBERS = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
)
_ZIP_MIMETYPE = re.compile(rb"mimetype(application/[a-z0-9.+-]+)")
_TEXT_TYPES = (
    (re.compile(rb"(?i)<!doctype html|<html|<head|<body|<meta|<div|<table|<p[ >]"), "text/html"),
    (re.compile(rb"(?i)<svg[\s>]"), "image/svg+xml"),
    (re.compile(rb"<\?xml[\s?]"), "application/xml"),
    (re.compile(rb"BEGIN:VCALENDAR"), "text/calendar"),
    (re.compile(rb"BEGIN:VCARD"), "text/vcard"),
)
_TEXT_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*")
_CONTROLS = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")


def sniff(data: bytes) -> str | None:
    """The MIME type the content's first bytes show, or None when they show none."""
    head = data[:_HEAD]
    for offset, magic, kind in _MAGIC:
        if head.startswith(magic, offset):
            return kind
    return _container(head) or _executable(head) or _text(head, len(data) > _HEAD)


def _container(head: bytes) -> str | None:
    """ZIP (and the office formats inside one), RIFF and ISO media files."""
    if head.startswith(b"PK\x03\x04"):
        mimetype = _ZIP_MIMETYPE.match(head, 30)  # ODF and EPUB store it first, uncompressed
        if mimetype:
            return mimetype.group(1).decode("ascii")
        if b"[Content_Types].xml" in head:
            return next((kind for name, kind in _ZIP_MEMBERS if name in head), None) or (
                "application/vnd.openxmlformats-officedocument"
            )
        return "application/zip"
    if head.startswith(b"RIFF") and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "video/mp4")
    return None


def _executable(head: bytes) -> str | None:
    """A Windows executable: "MZ", and the PE header offset it gives points at "PE\\0\\0"."""
    if not head.startswith(b"MZ") or len(head) < 64:
        return None
    offset = int.from_bytes(head[60:64], "little")
    if head[offset : offset + 4] == b"PE\x00\x00" or offset + 4 > len(head):
        return "application/vnd.microsoft.portable-executable"
    return None


def _text(head: bytes, truncated: bool) -> str | None:
    """Markup or plain text by its first bytes, if they are UTF-8 with no binary controls."""
    if not head or _CONTROLS.search(head):
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if not (truncated and err.start >= len(head) - 3):  # a character cut by _HEAD
            return None
    start = _TEXT_START.match(head)
    at = start.end() if start else 0
    for pattern, kind in _TEXT_TYPES:
        if pattern.match(head, at):
            return kind
    return "text/plain"
