"""Client-written booleans in a query string (`explain`, segmentation's `mask`)."""

from collections.abc import Mapping

from app.errors import ApiError

TRUE, FALSE = ("true", "1"), ("false", "0")


def boolean(query: Mapping[str, str], name: str, default: bool) -> bool:
    """The option `name`'s value (true/false, 1/0, any case), `default` when left out."""
    raw = query.get(name)
    if raw is None:
        return default
    value = str(raw).lower()
    if value not in TRUE + FALSE:
        raise ApiError("invalid_option", f"{name} must be true or false, not {str(raw)[:20]!r}.")
    return value in TRUE
