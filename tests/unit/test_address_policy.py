"""Which addresses a POP3 session may connect to (SSRF protection)."""

from __future__ import annotations

import pytest

from ingest.errors import SecurityError
from ingest.pop3_wire import permitted_address


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.10.1", "fe80::1", "fd00:ec2::254"])
def test_link_local_and_metadata_addresses_are_always_refused(host: str) -> None:
    """Cloud metadata and link-local addresses are refused even when private is allowed."""
    with pytest.raises(SecurityError, match="link-local or cloud metadata"):
        permitted_address(host, 995, allow_private=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.9", "::1"])
def test_loopback_and_private_need_the_account_to_allow_them(host: str) -> None:
    """Loopback and private ranges are refused by default and accepted when allowed."""
    with pytest.raises(SecurityError, match="allow_private_network"):
        permitted_address(host, 995, allow_private=False)
    assert permitted_address(host, 995, allow_private=True)


def test_public_addresses_are_accepted() -> None:
    """A global address passes without any opt-in."""
    assert permitted_address("8.8.8.8", 995, allow_private=False) == "8.8.8.8"
