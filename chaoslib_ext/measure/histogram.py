"""A mergeable latency histogram with bounded relative error (HDR-style log-linear buckets).

Values are whole microseconds. Below 2**PRECISION_BITS each value has its own bucket; above,
every power of two is split into 2**(PRECISION_BITS - 1) equal buckets, so a bucket is never
wider than 1/64 of its lower bound and its midpoint is within 1/128 (0.78%) of any value in it.
Locust's own percentiles are rounded to two significant digits; these are not.

A histogram can also count, exactly, the values above a few limits given when it is made (the
SLO's latency objectives): whether "p95 <= 250ms" holds is then decided on exact counts, never on
a bucket's midpoint.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

PRECISION_BITS = 7
_HALF = 1 << (PRECISION_BITS - 1)
MAX_RELATIVE_ERROR = 1 / (1 << PRECISION_BITS)

Quantile = float | Fraction


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


def rank(quantile: Quantile, count: int) -> int:
    """The 1-based nearest rank of a quantile: ceil(q * n), at least 1 (exact for Fractions)."""
    return max(1, math.ceil(quantile * count))


class SealedBuckets:
    """A histogram's bucket counts once it is kept rather than added to: two compact arrays, in
    bucket order, 6 bytes a bucket instead of a dict's 80 or so (a runner keeps two
    histograms a second of every endpoint for the whole run)."""

    __slots__ = ("counts", "indices")

    def __init__(self, buckets: dict[int, int]) -> None:
        ordered = sorted(buckets.items())
        self.indices = array("H", (index for index, _ in ordered))  # at most ~3,800 for 2**63 µs
        wide = any(count >= 1 << 32 for _, count in ordered)
        self.counts = array("Q" if wide else "I", (count for _, count in ordered))

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(self.indices, self.counts, strict=True)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Histogram:
    """Counts of latencies per bucket, the exact count, sum, minimum and maximum, and the exact
    number of values above each tracked limit (`over`)."""

    __slots__ = ("buckets", "count", "max_us", "min_us", "over", "total_us")

    def __init__(self, limits: Iterable[int] = ()) -> None:
        self.buckets: dict[int, int] | SealedBuckets = {}
        self.count = 0
        self.total_us = 0
        self.min_us: int | None = None
        self.max_us: int | None = None
        self.over: dict[int, int] = dict.fromkeys(limits, 0)

    def record_ms(self, milliseconds: float) -> None:
        """Record one latency given in (fractional) milliseconds, as Locust reports them."""
        self.record_us(max(0, round(milliseconds * 1000)))

    def seal(self) -> None:
        """Keep the bucket counts compactly; adding to the histogram later unseals them."""
        if isinstance(self.buckets, dict):
            self.buckets = SealedBuckets(self.buckets)

    def _open(self) -> dict[int, int]:
        if isinstance(self.buckets, SealedBuckets):
            self.buckets = dict(self.buckets.items())
        return self.buckets

    def record_us(self, micros: int) -> None:
        # the recorder's hot path (every request): bucket_index inlined, no call it can do without
        shift = micros.bit_length() - PRECISION_BITS
        index = micros if shift <= 0 else shift * _HALF + (micros >> shift)
        buckets = self.buckets if type(self.buckets) is dict else self._open()
        buckets[index] = buckets.get(index, 0) + 1
        if self.count == 0:
            self.min_us = self.max_us = micros
        elif micros < self.min_us:  # type: ignore[operator]  # set with the first value
            self.min_us = micros
        elif micros > self.max_us:  # type: ignore[operator]
            self.max_us = micros
        self.count += 1
        self.total_us += micros
        over = self.over
        for limit in over:
            if micros > limit:
                over[limit] += 1

    def record_descending(self, first_us: int, step_us: int, count: int) -> None:
        """Record first, first - step, first - 2 step, ... (`count` values, all >= 0) in as many
        steps as buckets they cover, not one per value."""
        if count <= 0:
            return
        assert step_us > 0 and first_us - (count - 1) * step_us >= 0
        buckets = self._open()
        done = 0
        while done < count:
            value = first_us - done * step_us
            index = bucket_index(value)
            low = bucket_bounds(index)[0]
            in_bucket = min(count, (first_us - low) // step_us + 1) - done
            buckets[index] = buckets.get(index, 0) + in_bucket
            done += in_bucket
        last = first_us - (count - 1) * step_us
        self.count += count
        self.total_us += (first_us + last) * count // 2
        self.min_us = last if self.min_us is None else min(self.min_us, last)
        self.max_us = first_us if self.max_us is None else max(self.max_us, first_us)
        for limit in self.over:
            if first_us > limit:
                self.over[limit] += min(count, (first_us - limit - 1) // step_us + 1)

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.over = dict(other.over)
        else:  # an exact count survives only where both sides kept it
            self.over = {
                limit: n + other.over[limit] for limit, n in self.over.items() if limit in other.over
            }
        buckets = self._open()
        for index, count in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + count
        self.count += other.count
        self.total_us += other.total_us
        if other.min_us is not None and (self.min_us is None or other.min_us < self.min_us):
            self.min_us = other.min_us
        if other.max_us is not None and (self.max_us is None or other.max_us > self.max_us):
            self.max_us = other.max_us

    def above(self, limit_us: int) -> int:
        """How many values are greater than `limit_us`: exact when the limit was tracked, or when
        no bucket straddles it; otherwise counted by bucket midpoints (within the error bound)."""
        if limit_us in self.over or self.count == 0:
            return self.over.get(limit_us, 0)
        assert self.min_us is not None and self.max_us is not None
        if limit_us >= self.max_us or limit_us < self.min_us:
            return 0 if limit_us >= self.max_us else self.count
        total = 0
        for index, count in self.buckets.items():
            low, high = bucket_bounds(index)
            if low > limit_us or (high - 1 > limit_us and (low + high - 1) / 2 > limit_us):
                total += count
        return total

    def within(self, quantile: Quantile, limit_us: int) -> bool:
        """Whether the nearest-rank percentile is at most `limit_us`: at least rank(q, n) values
        are <= the limit, i.e. above(limit) <= n - rank(q, n)."""
        return self.count > 0 and self.above(limit_us) <= self.count - rank(quantile, self.count)

    def percentile_ms(self, quantile: Quantile) -> float | None:
        """Nearest-rank percentile (quantile in [0, 1]) in milliseconds; None when empty.

        The answer is the midpoint of the bucket holding the value of rank ceil(q * n),
        clamped to the exact minimum and maximum, so it lies within MAX_RELATIVE_ERROR of the
        exact nearest-rank value; it is also put on the right side of every tracked limit.
        """
        if self.count == 0:
            return None
        wanted = rank(quantile, self.count)
        seen = 0
        for index, count in sorted(self.buckets.items()):
            seen += count
            if seen >= wanted:
                low, high = bucket_bounds(index)
                middle = low if high - low == 1 else (low + high - 1) / 2
                assert self.min_us is not None and self.max_us is not None
                value = min(max(middle, self.min_us), self.max_us)
                for limit, above in self.over.items():
                    at_most = above <= self.count - wanted
                    if low <= limit < high:  # the true value and the limit share this bucket
                        value = min(value, limit) if at_most else max(value, limit + 1)
                return value / 1000
        raise AssertionError("bucket counts do not add up to the histogram count")

    def mean_ms(self) -> float | None:
        return None if self.count == 0 else self.total_us / self.count / 1000

    def max_ms(self) -> float | None:
        return None if self.max_us is None else self.max_us / 1000

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "n": self.count,
            "sum": self.total_us,
            "min": self.min_us,
            "max": self.max_us,
            "b": [[index, count] for index, count in sorted(self.buckets.items())],
        }
        if self.over:
            data["over"] = [[limit, count] for limit, count in sorted(self.over.items())]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        histogram = cls((int(limit) for limit, _ in data.get("over", ())))
        histogram.buckets = {int(index): int(count) for index, count in data["b"]}
        histogram.count = int(data["n"])
        histogram.total_us = int(data["sum"])
        histogram.min_us = data["min"]
        histogram.max_us = data["max"]
        histogram.over = {int(limit): int(count) for limit, count in data.get("over", ())}
        return histogram

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        total = cls()
        for histogram in histograms:
            total.merge(histogram)
        return total
