"""Integers that clients write (a query's top_k, a body's declared length), read without
the two ways `int()` fails on them: digits that aren't ASCII ('²' passes `str.isdigit`,
and `int` refuses it) and thousands of digits (`int` refuses more than 4,300)."""

# Larger than any count or size the app compares with; what a longer number is read as.
LARGE = 10**18


def natural(raw: str) -> int | None:
    """`raw` as a non-negative integer of ASCII digits, or None when it is not one. A
    number past LARGE is read as LARGE, so comparing it with a limit still refuses it."""
    if not raw.isascii() or not raw.isdigit():
        return None
    digits = raw.lstrip("0") or "0"
    return LARGE if len(digits) > len(str(LARGE)) else min(int(digits), LARGE)
