"""Dates as people read them: the study stores ISO 8601 UTC stamps with microseconds (they sort as
text); reports and pages show ``4 Dec 2026, 02:10 UTC``."""

from __future__ import annotations

from datetime import datetime, timezone


def parse(stamp) -> datetime | None:
    if not stamp:
        return None
    try:
        dt = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def format_date(stamp, *, time: bool = True) -> str:
    """``2026-12-04T02:10:13.344725+00:00`` → ``4 Dec 2026, 02:10 UTC`` (``time=False``: ``4 Dec 2026``).
    Text that is not a date is returned as it is; nothing → ``—``."""
    dt = parse(stamp)
    if dt is None:
        return str(stamp) if stamp else "—"
    day = f"{dt.day} {dt:%b %Y}"
    return f"{day}, {dt:%H:%M} UTC" if time else day


def format_span(first, last) -> str:
    """``4 – 6 Dec 2026`` style range of two stamps (either may be missing)."""
    a, b = parse(first), parse(last)
    if a is None and b is None:
        return "—"
    if a is None or b is None or a.date() == b.date():
        return format_date(first or last, time=False)
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day} – {b.day} {b:%b %Y}"
    return f"{format_date(first, time=False)} – {format_date(last, time=False)}"
