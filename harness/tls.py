"""A throwaway certificate authority (trustme) and a server certificate for localhost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA to trust, and the server's certificate chain and private key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_server_tls(directory: Path, names: tuple[str, ...] = SERVER_NAMES) -> TlsFiles:
    """Create a fresh CA and a server certificate for ``names`` under ``directory``.

    Clients verify with ``ssl.create_default_context(cafile=ca_file)`` and hostname checking
    on, connecting by any of ``names``. The key file is readable by its owner only.
    """
    import trustme  # noqa: PLC0415 - a test dependency, needed only when TLS is wanted

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="ingest test CA")
    cert = ca.issue_cert(*names)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    files.key_file.touch(mode=0o600)
    cert.private_key_pem.write_to_path(str(files.key_file))
    return files
