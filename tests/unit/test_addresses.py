"""Address headers: strict mailboxes (CVE-2023-27043), clean display names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.addresses import (
    MAX_ADDRESS_CHARS,
    AddressBudget,
    extract_mailboxes,
    is_valid_address,
    split_addresses,
)

ALICE = "alice@example.org"
BOB = "bob@example.com"
UNSAFE = ("\r", "\n", "\x00", "\u2028", "\x85")


def mailboxes(value: str) -> tuple[list[tuple[str, str]], set[str]]:
    """The mailboxes of one header value, and the defects found."""
    defects: set[str] = set()
    return extract_mailboxes(value, AddressBudget(), defects), defects


# The inputs of CPython's test for gh-102988 (CVE-2023-27043): alice, a special, then <bob>.
@pytest.mark.parametrize("separator", list('()<>[]@;:."'))
def test_gh_102988_inputs_yield_no_address(separator: str) -> None:
    """``alice@example.org{special}<bob@example.com>`` reports neither alice nor bob."""
    found, defects = mailboxes(f"{ALICE}{separator}<{BOB}>")
    assert found == []
    assert "invalid-address" in defects


@pytest.mark.parametrize("separator", list('()<>[];:"'))
def test_gh_102988_inputs_with_a_space_still_yield_no_address(separator: str) -> None:
    """With a space before ``<`` the junk still holds a special, so the piece is dropped."""
    found, defects = mailboxes(f"{ALICE}{separator} <{BOB}>")
    assert found == []
    assert "invalid-address" in defects


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{ALICE},<{BOB}>", [("", ALICE), ("", BOB)]),
        (f"{ALICE} (Alice)", [("", ALICE)]),
        ('"Jane Doe" <jane@example.net>, "John Doe" <john@example.net>', [
            ("Jane Doe", "jane@example.net"), ("John Doe", "john@example.net")
        ]),
        ("undisclosed-recipients:;", []),
        ("team: a@example.com, b@example.com;, c@example.com", [
            ("", "a@example.com"), ("", "b@example.com"), ("", "c@example.com")
        ]),
        ("<@route.example,@other.example:x@example.com>", [("", "x@example.com")]),
        ('"Müller, Jörg" <j@example.de>', [("Müller, Jörg", "j@example.de")]),
        ("=?utf-8?q?J=C3=B6rg?= <j@example.de>", [("Jörg", "j@example.de")]),
        ('"a\\"b" <x@example.com>', [('a"b', "x@example.com")]),
    ],
)  # fmt: skip
def test_valid_lists_keep_every_address(value: str, expected: list[tuple[str, str]]) -> None:
    """Well-formed lists, groups, routes, comments and encoded names parse as written."""
    found, defects = mailboxes(value)
    assert found == expected
    assert "invalid-address" not in defects


def test_invalid_comment_drops_the_address() -> None:
    """``alice@example.org )Alice(`` is rejected, as CPython's strict parser does."""
    assert mailboxes(f"{ALICE} )Alice(")[0] == []


def test_junk_after_a_valid_address_drops_it() -> None:
    """A valid address followed by junk is not kept: the junk may be the real address."""
    found, defects = mailboxes(f"{ALICE} {BOB}")
    assert found == []
    assert "invalid-address" in defects


@pytest.mark.parametrize(
    "value",
    [
        f'"{ALICE}" <{BOB}>',
        f"{ALICE} <{BOB}>",
        f'"Alice, {ALICE}" <{BOB}>',
        f"Support (alice@example.org) <{BOB}>",
    ],
)
def test_display_name_holding_another_address_is_flagged(value: str) -> None:
    """The real (angle) address is reported and the deceptive name is flagged."""
    found, defects = mailboxes(value)
    assert [address for _, address in found] == [BOB]
    assert "display-name-address" in defects


def test_encoded_address_in_display_name_is_flagged() -> None:
    """An address hidden in an encoded word of the name is found after decoding."""
    found, defects = mailboxes(f"=?utf-8?q?alice=40example=2Eorg?= <{BOB}>")
    assert found == [(ALICE, BOB)]
    assert "display-name-address" in defects


def test_display_name_repeating_the_address_is_not_flagged() -> None:
    """A name that shows the same address, in any case, is not deceptive."""
    found, defects = mailboxes(f'"Bob@Example.com" <{BOB}>')
    assert found == [("Bob@Example.com", BOB)]
    assert "display-name-address" not in defects


def test_encoded_words_in_a_quoted_name_are_decoded() -> None:
    """Mailers that quote encoded words get their name decoded, not their address dropped."""
    found, _ = mailboxes('"=?utf-8?b?0JDQu9C10LrRgQ==?=" <bob@example.com>')
    assert found == [("Алекс", BOB)]


def test_encoded_crlf_in_a_name_is_replaced() -> None:
    """CVE-2024-6923: an encoded CR/LF in a display name becomes spaces and is reported."""
    found, defects = mailboxes("=?utf-8?q?Eve=0D=0ABcc=3A_x=40y?= <eve@example.com>")
    assert found == [("Eve  Bcc: x@y", "eve@example.com")]
    assert "header-crlf" in defects


@pytest.mark.parametrize(
    "address",
    [
        "a@b",
        "first.last+tag@example.co.uk",
        "用户@例子.广告",
        "x@[192.0.2.1]",
        "x@[IPv6:2001:db8::1]",
    ],
)
def test_valid_addresses(address: str) -> None:
    """Ordinary, internationalised and domain-literal addresses are valid."""
    assert is_valid_address(address)


@pytest.mark.parametrize(
    "address",
    [
        None, "", "@", "a@", "@b", "a@b@c", "ab", '"a b"@c', "a b@c", "a@b c", "a\t@b",
        "a\r\n@b", "a@b\x00", "a\udce9@b", "<a@b>", "a,b@c", "a(x)@b", "a@b;c", "a@[b", "a\u2028@b",
    ],
)  # fmt: skip
def test_invalid_addresses(address: str | None) -> None:
    """No address with a second "@", an empty side, whitespace, controls or specials passes."""
    assert not is_valid_address(address)


def test_oversized_address_is_dropped() -> None:
    """One address longer than MAX_ADDRESS_CHARS is dropped and reported."""
    found, defects = mailboxes("x" * MAX_ADDRESS_CHARS + f" <{BOB}>, {ALICE}")
    assert found == [("", ALICE)]
    assert "address-too-long" in defects


def test_message_budget_caps_total_work() -> None:
    """Once a message's address budget is spent, further addresses are skipped and reported."""
    defects: set[str] = set()
    budget = AddressBudget(remaining=40)
    found = extract_mailboxes(", ".join([BOB] * 10), budget, defects)
    assert 0 < len(found) < 10
    assert "address-budget-exceeded" in defects


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_quadratic_inputs_stay_fast() -> None:
    """Inputs that take the stdlib address parser seconds per 32 KiB finish quickly."""
    for value in ('"' * 1_000_000, "a " * 500_000, "(" * 100_000, "a@b.c," * 100_000):
        mailboxes(value)


@pytest.mark.parametrize(
    ("value", "pieces"),
    [
        ("a@b, c@d", ["a@b", " c@d"]),
        ('"x, y" <a@b>, c@d', ['"x, y" <a@b>', " c@d"]),
        ("a@b (x, y), c@d", ["a@b (x, y)", " c@d"]),
        ("(a (b, c) d), e@f", ["(a (b, c) d)", " e@f"]),
        ("<@r1,@r2:a@b>, c@d", ["<@r1,@r2:a@b>", " c@d"]),
        ("g: a@b, c@d;, e@f", ["g: a@b, c@d;", " e@f"]),
        ("x@[1,2], c@d", ["x@[1,2]", " c@d"]),
        ("a\\,b@c, d@e", ["a\\,b@c", " d@e"]),
        ('"a\\", b" <x@y>', ['"a\\", b" <x@y>']),
    ],
)
def test_split_addresses_honours_quotes_comments_and_groups(value: str, pieces: list[str]) -> None:
    """Commas split the list only at top level; an escaped comma never splits."""
    assert split_addresses(value) == pieces


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_property_any_header_yields_only_valid_addresses(value: str) -> None:
    """Whatever the header text, every address kept is valid and every name is clean."""
    found, _ = mailboxes(value)
    for name, address in found:
        assert is_valid_address(address)
        assert not any(char in name for char in UNSAFE)
        name.encode("utf-8")


_PIECES = st.sampled_from([ALICE, BOB, "Name", "=?utf-8?q?", "?=", "=0D=0A", *'<>()",;:@. \\[]'])


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_property_address_like_junk_yields_only_valid_addresses(value: str) -> None:
    """Address-shaped junk never produces an invalid address or an unclean name."""
    found, _ = mailboxes(value)
    assert all(is_valid_address(address) for _, address in found)
    assert not any(char in name for name, _ in found for char in UNSAFE)


_ATOM_TEXT = st.text("abZ9!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=5)
_DOT_ATOMS = st.lists(_ATOM_TEXT, min_size=1, max_size=3).map(".".join)
_SPACE = st.sampled_from(["", " ", "\t", "  "])
_NAME = st.lists(
    st.tuples(st.text("aZ9_'+-", min_size=1, max_size=5), st.sampled_from([" ", "\t", "  "])),
    min_size=1,
    max_size=3,
).map(lambda words: "".join(word + gap for word, gap in words))


@settings(max_examples=500, deadline=None)
@given(_SPACE, st.one_of(st.just(""), _NAME), _DOT_ATOMS, _DOT_ATOMS, _SPACE)
def test_simple_shapes_match_the_rfc5322_parser(
    lead: str, name: str, local: str, domain: str, trail: str
) -> None:
    """The shortcut for ``a@b`` and ``Words <a@b>`` gives what the RFC 5322 parser gives."""
    address = f"{local}@{domain}"
    piece = f"{lead}{name}<{address}>{trail}" if name else f"{lead}{address}{trail}"
    assert_simple_like_strict(piece)


@settings(max_examples=300, deadline=None)
@given(_SPACE, st.none() | st.text("aZ9 .,'()@:;<>_+-", max_size=12), _DOT_ATOMS, _DOT_ATOMS)
def test_quoted_and_angle_shapes_match_the_rfc5322_parser(
    lead: str, quoted: str | None, local: str, domain: str
) -> None:
    """The shortcut for ``<a@b>`` and ``"Name, with specials" <a@b>`` matches the parser."""
    name = "" if quoted is None else f'"{quoted}"{lead}'
    assert_simple_like_strict(f"{lead}{name}<{local}@{domain}>{lead}")


def assert_simple_like_strict(piece: str) -> None:
    from ingest.addresses import _parse_simple, _parse_strict  # noqa: PLC0415

    fast_defects: set[str] = set()
    strict_defects: set[str] = set()
    fast = _parse_simple(piece, fast_defects)
    assert fast is not None
    assert (fast, fast_defects) == (_parse_strict(piece, strict_defects), strict_defects)
