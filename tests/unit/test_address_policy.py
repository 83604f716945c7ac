"""Which addresses a POP3 session may connect to (SSRF protection)."""

from __future__ import annotations

import socket

import pytest

from ingest.errors import SecurityError
from ingest.pop3_wire import permitted_address


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.10.1", "fe80::1", "fd00:ec2::254"])
def test_link_local_and_metadata_addresses_are_always_refused(host: str) -> None:
    """Cloud metadata and link-local addresses are refused even when private is allowed."""
    with pytest.raises(SecurityError, match="link-local or cloud metadata"):
        permitted_address(host, 995, allow_private=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1"])
def test_a_name_resolving_to_a_private_address_needs_the_account_to_allow_it(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostname whose DNS answer is loopback or private is refused unless allowed."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(host: str, port: int, *args: object, **kw: object) -> list[tuple[object, ...]]:
        assert host == "pop.example.com"
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(SecurityError, match="allow_private_network"):
        permitted_address("pop.example.com", 995, allow_private=False)
    assert permitted_address("pop.example.com", 995, allow_private=True) == address


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "::1"])
def test_addresses_written_in_the_config_are_the_operators_choice(host: str) -> None:
    """An IP literal or localhost in the config is taken as explicit consent."""
    assert permitted_address(host, 995, allow_private=False)


def test_public_addresses_are_accepted() -> None:
    """A global address passes without any opt-in."""
    assert permitted_address("8.8.8.8", 995, allow_private=False) == "8.8.8.8"
