"""Mask personally identifiable information before text is tokenised or written.

Placeholders are bracketed words that survive tokenisation as recognisable pieces. Order
matters: URLs first (they can contain e-mail-like and digit runs), then e-mail addresses, card
numbers (13-19 digits passing the Luhn check, so order numbers are not masked), then phones.
"""

from __future__ import annotations

import re

EMAIL, PHONE, CARD, URL = "[EMAIL]", "[PHONE]", "[CARD]", "[URL]"

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
# A URL carries a token when its query string or path holds a long opaque value
# (session ids, reset links, tracking codes); plain links like example.com/help stay readable.
_TOKEN_IN_URL = re.compile(r"[?&;#][^=\s]*=|/[A-Za-z0-9_\-]{16,}|[A-Za-z0-9_\-]{24,}")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]?\d{2,4}){1,4}(?!\w)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")


def _phone(match: re.Match) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    if _DATE.fullmatch(found.strip()):
        return found
    # 7-15 digits (E.164 allows 15); shorter runs are amounts and years. An unbroken run without
    # a country code longer than 11 digits is an order or account number, not a phone.
    if found.isdigit() and len(digits) > 11:
        return found
    return PHONE if 7 <= len(digits) <= 15 else found


def _url(match: re.Match) -> str:
    url = match.group(0)
    return URL if _TOKEN_IN_URL.search(url) else url


def mask_pii(text: str) -> str:
    """Replace e-mails, phone numbers, card numbers and URLs with tokens by placeholders."""
    text = _URL.sub(_url, text)
    text = _EMAIL.sub(EMAIL, text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)
