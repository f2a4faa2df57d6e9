"""A mergeable latency histogram with bounded relative error (HDR-style log-linear buckets).

Values are whole microseconds. Below 2**PRECISION_BITS each value has its own bucket; above,
every power of two is split into 2**(PRECISION_BITS - 1) equal buckets, so a bucket is never
wider than 1/64 of its lower bound and its midpoint is within 1/128 (0.78%) of any value in it.
Locust's own percentiles are rounded to two significant digits; these are not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

PRECISION_BITS = 7
_HALF = 1 << (PRECISION_BITS - 1)
MAX_RELATIVE_ERROR = 1 / (1 << PRECISION_BITS)


def bucket_index(micros: int) -> int:
    """Bucket of a non-negative whole number of microseconds."""
    shift = micros.bit_length() - PRECISION_BITS
    if shift <= 0:
        return micros
    return shift * _HALF + (micros >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """Inclusive lower and exclusive upper bound, in microseconds, of a bucket."""
    if index < (1 << PRECISION_BITS):
        return index, index + 1
    shift, offset = divmod(index - _HALF, _HALF)
    mantissa = offset + _HALF
    return mantissa << shift, (mantissa + 1) << shift


class Histogram:
    """Counts of latencies per bucket, plus the exact count, sum, minimum and maximum."""

    __slots__ = ("buckets", "count", "max_us", "min_us", "total_us")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total_us = 0
        self.min_us: int | None = None
        self.max_us: int | None = None

    def record_ms(self, milliseconds: float) -> None:
        """Record one latency given in (fractional) milliseconds, as Locust reports them."""
        self.record_us(max(0, round(milliseconds * 1000)))

    def record_us(self, micros: int) -> None:
        index = bucket_index(micros)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total_us += micros
        if self.min_us is None or micros < self.min_us:
            self.min_us = micros
        if self.max_us is None or micros > self.max_us:
            self.max_us = micros

    def merge(self, other: Histogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total_us += other.total_us
        if other.min_us is not None and (self.min_us is None or other.min_us < self.min_us):
            self.min_us = other.min_us
        if other.max_us is not None and (self.max_us is None or other.max_us > self.max_us):
            self.max_us = other.max_us

    def percentile_ms(self, quantile: float) -> float | None:
        """Nearest-rank percentile (quantile in [0, 1]) in milliseconds; None when empty.

        The answer is the midpoint of the bucket holding the value of rank ceil(q * n),
        clamped to the exact minimum and maximum, so it lies within MAX_RELATIVE_ERROR of the
        exact nearest-rank value.
        """
        if self.count == 0:
            return None
        rank = max(1, math.ceil(quantile * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = low if high - low == 1 else (low + high - 1) / 2
                assert self.min_us is not None and self.max_us is not None
                return min(max(middle, self.min_us), self.max_us) / 1000
        raise AssertionError("bucket counts do not add up to the histogram count")

    def mean_ms(self) -> float | None:
        return None if self.count == 0 else self.total_us / self.count / 1000

    def max_ms(self) -> float | None:
        return None if self.max_us is None else self.max_us / 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.count,
            "sum": self.total_us,
            "min": self.min_us,
            "max": self.max_us,
            "b": [[index, count] for index, count in sorted(self.buckets.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        histogram = cls()
        histogram.buckets = {int(index): int(count) for index, count in data["b"]}
        histogram.count = int(data["n"])
        histogram.total_us = int(data["sum"])
        histogram.min_us = data["min"]
        histogram.max_us = data["max"]
        return histogram

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        total = cls()
        for histogram in histograms:
            total.merge(histogram)
        return total
