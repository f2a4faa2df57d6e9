import pytest

from chaoslib_ext.units import format_duration, format_ms, format_percent, parse_duration, parse_percent


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("500us", 0.0005),
        (3, 3.0),
        (0.5, 0.5),
        (" 10s ", 10.0),
    ],
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["250", "10 s", "ten seconds", "1d", "-1s", "", "s", True, -2])
def test_bad_durations_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "fraction"), [("99.5%", 0.995), ("100%", 1.0), ("0%", 0.0), (99.9, 0.999)])
def test_percentages_parse_to_fractions(text, fraction):
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["99.5", "101%", "abc%", "%", True, -1])
def test_bad_percentages_are_refused(text):
    with pytest.raises(ValueError, match="percentage"):
        parse_percent(text)


def test_formatting_is_short_and_exact_enough():
    assert format_duration(0.25) == "250ms"
    assert format_duration(5) == "5s"
    assert format_duration(12.5) == "12.5s"
    assert format_duration(125) == "2m05s"
    assert format_percent(0.995) == "99.5%"
    assert format_percent(1.0) == "100%"
    assert format_ms(None) == "-"
    assert format_ms(0.842) == "0.84ms"
    assert format_ms(250) == "250ms"
    assert format_ms(1250) == "1.25s"
