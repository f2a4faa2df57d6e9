import math
import random

import pytest

from chaoslib_ext.measure.histogram import (
    MAX_RELATIVE_ERROR,
    Histogram,
    SealedBuckets,
    bucket_bounds,
    bucket_index,
)


def exact_percentile(values: list[int], quantile: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(quantile * len(ordered))) - 1]


def test_every_value_falls_inside_its_bucket():
    for micros in [*range(0, 5000), *random.Random(1).sample(range(5000, 10**9), 5000)]:
        low, high = bucket_bounds(bucket_index(micros))
        assert low <= micros < high
        assert (high - low) / max(low, 1) <= 2 * MAX_RELATIVE_ERROR or high - low == 1


def test_small_known_sample_gives_exact_nearest_rank_percentiles():
    histogram = Histogram()
    for ms in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]:
        histogram.record_ms(ms / 100)  # 10us ... 100us: exact buckets
    assert histogram.percentile_ms(0.5) == pytest.approx(0.05)
    assert histogram.percentile_ms(0.9) == pytest.approx(0.09)
    assert histogram.percentile_ms(0.95) == pytest.approx(0.10)
    assert histogram.percentile_ms(1.0) == pytest.approx(0.10)
    assert histogram.percentile_ms(0.0) == pytest.approx(0.01)
    assert histogram.mean_ms() == pytest.approx(0.055)


@pytest.mark.parametrize("seed", range(20))
def test_percentiles_are_within_one_percent_of_exact_values(seed):
    rng = random.Random(seed)
    values = [max(0, round(rng.lognormvariate(9, 1.8))) for _ in range(rng.randint(1, 5000))]
    histogram = Histogram()
    for micros in values:
        histogram.record_us(micros)
    for quantile in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_percentile(values, quantile)
        measured = histogram.percentile_ms(quantile) * 1000
        assert abs(measured - exact) <= MAX_RELATIVE_ERROR * exact + 0.5, (quantile, exact, measured)


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(7)
    parts = [Histogram() for _ in range(5)]
    whole = Histogram()
    for _ in range(3000):
        micros = rng.randint(0, 3_000_000)
        rng.choice(parts).record_us(micros)
        whole.record_us(micros)
    merged = Histogram.merged(parts)
    assert merged.to_dict() == whole.to_dict()


def test_round_trip_through_a_dict_keeps_everything():
    histogram = Histogram()
    for ms in (0.3, 12.5, 999.0, 15000.0):
        histogram.record_ms(ms)
    copy = Histogram.from_dict(histogram.to_dict())
    assert copy.to_dict() == histogram.to_dict()
    assert copy.percentile_ms(0.99) == histogram.percentile_ms(0.99)


def test_empty_histogram_has_no_percentiles():
    histogram = Histogram()
    assert histogram.percentile_ms(0.95) is None
    assert histogram.mean_ms() is None
    assert histogram.max_ms() is None


def test_a_sealed_histogram_answers_as_before_and_can_be_added_to_again():
    rng = random.Random(5)
    values = [int(rng.lognormvariate(8, 1.2)) for _ in range(5000)]
    open_one, sealed = Histogram((3000, 250_000)), Histogram((3000, 250_000))
    for value in values:
        open_one.record_us(value)
        sealed.record_us(value)
    sealed.seal()
    assert isinstance(sealed.buckets, SealedBuckets) and len(sealed.buckets) == len(open_one.buckets)
    for quantile in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert sealed.percentile_ms(quantile) == open_one.percentile_ms(quantile)
    for limit in (1000, 3000, 7777, 250_000):
        assert sealed.above(limit) == open_one.above(limit)
    assert sealed.to_dict() == open_one.to_dict()
    into = Histogram()
    into.merge(sealed)
    assert into.to_dict() == open_one.to_dict()
    sealed.record_us(123_456)  # kept, then added to (a late line from a worker back from missing)
    open_one.record_us(123_456)
    assert sealed.to_dict() == open_one.to_dict() and isinstance(sealed.buckets, dict)
