"""Parsing of the human units used in experiments: durations ("250ms", "1m30s") and shares ("99.5%")."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|us|s|m|h))+$"
PERCENT_PATTERN = r"^\d+(\.\d+)?%$"
_RATE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(B/s|KB/s|MB/s|GB/s|KiB/s|MiB/s|GiB/s|bps|kbps|mbps|gbps|kbit|mbit|gbit)"
)
_RATE_BYTES = {
    "B/s": 1,
    "KB/s": 1e3,
    "MB/s": 1e6,
    "GB/s": 1e9,
    "KiB/s": 1024,
    "MiB/s": 1024**2,
    "GiB/s": 1024**3,
    "bps": 1 / 8,
    "kbps": 1e3 / 8,
    "mbps": 1e6 / 8,
    "gbps": 1e9 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
}


def parse_duration(text: str | int | float) -> float:
    """Return seconds for "250ms", "1.5s", "2m", "1h30m" or a bare number of seconds.

    Raises ValueError with a hint-ready message for anything else ("250" as a string
    is refused: a bare string number is ambiguous between seconds and milliseconds).
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 250ms, 10s or 1m")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    value = text.strip()
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"expected a duration such as 250ms, 10s or 1m, got {text!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))


def parse_percent(text: str | int | float) -> float:
    """Return a fraction in [0, 1] for "99.5%" (strings need the % sign; numbers are percents)."""
    if isinstance(text, bool):
        raise ValueError("expected a percentage such as 99.5%")
    if isinstance(text, int | float):
        number = float(text)
    else:
        value = text.strip()
        if not re.fullmatch(PERCENT_PATTERN, value):
            raise ValueError(f"expected a percentage such as 99.5%, got {text!r}")
        number = float(value[:-1])
    if not 0.0 <= number <= 100.0:
        raise ValueError(f"a percentage must be between 0% and 100%, got {text!r}")
    # in decimal: 99.9 / 100 in binary floating point is 0.9990000000000001, not the 0.999 written
    return float(Decimal(repr(number)) / 100)


def exactly(value: float) -> Fraction:
    """The decimal a user wrote (0.999 for "99.9%", 0.25 for "250ms"), as an exact fraction: the
    shortest repr of a float is the decimal it was parsed from."""
    return Fraction(repr(value))


def parse_rate(text: str) -> float:
    """Bytes per second for "100KB/s", "2MiB/s", "8mbit" (bits, as tc writes them)."""
    match = _RATE.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a rate such as 100KB/s, 2MiB/s or 8mbit, got {text!r}")
    return float(match.group(1)) * _RATE_BYTES[match.group(2)]


def format_rate(bytes_per_second: float) -> str:
    for unit, size in (("MB/s", 1e6), ("KB/s", 1e3)):
        if bytes_per_second >= size:
            return f"{bytes_per_second / size:g}{unit}"
    return f"{bytes_per_second:g}B/s"


def format_duration(seconds: float) -> str:
    """Short human form: 850ms, 12.5s, 2m05s."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def format_ms(milliseconds: float | None) -> str:
    """Latency for humans: 0.84ms, 12.3ms, 1.25s; "-" when there is no value."""
    if milliseconds is None:
        return "-"
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.2f}s"
    if milliseconds >= 100:
        return f"{milliseconds:.0f}ms"
    if milliseconds >= 10:
        return f"{milliseconds:.1f}ms"
    return f"{milliseconds:.2f}ms"


def format_percent(fraction: float | None, digits: int = 3) -> str:
    """99.5%, 100%, 0.25%: as many decimals as needed, up to `digits`."""
    if fraction is None:
        return "-"
    text = f"{fraction * 100:.{digits}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def format_clock(seconds: float, tenths: bool = False) -> str:
    """A stopwatch reading: 01:05, or 01:05.3 with tenths."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:04.1f}" if tenths else f"{int(minutes):02d}:{int(rest):02d}"
