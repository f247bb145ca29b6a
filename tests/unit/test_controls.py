"""The range picker's URL rule: a user's choice changes the URL, a page render never does."""

from __future__ import annotations

from dashboard.components.controls import RANGE_DATES_ID, RANGE_PRESET_ID, next_range_search


def test_rendering_the_pickers_keeps_an_unknown_range_and_its_notice_in_the_url():
    # At render the pickers show the default range (7d) and its dates.
    for trigger in (RANGE_PRESET_ID, RANGE_DATES_ID):
        changed = next_range_search(trigger, "7d", "2026-01-01", "2026-01-07", "?range=bogus")
        assert changed is None, trigger


def test_choosing_a_range_writes_it_to_the_url():
    assert next_range_search(RANGE_PRESET_ID, "30d", None, None, "?range=bogus") == "?range=30d"
    assert next_range_search(RANGE_PRESET_ID, "30d", None, None, "?range=7d") == "?range=30d"
    dates = next_range_search(RANGE_DATES_ID, "custom", "2026-01-01", "2026-01-07", "")
    assert dates == "?range=2026-01-01..2026-01-07"


def test_choosing_an_hours_window_writes_it_to_the_url_and_rendering_never_does():
    from dashboard.components.controls import next_window_search

    assert next_window_search("6h", "") == "?window=6h"
    assert next_window_search("1h", "?window=6h") == "?window=1h"
    # The picker rendering what the URL holds (or the default for none) changes nothing.
    assert next_window_search("6h", "?window=6h") is None
    assert next_window_search("24h", "") is None
    # An unknown window stays in the URL with its notice; the picker shows the default.
    assert next_window_search("24h", "?window=bogus") is None
    assert next_window_search("7d", "") is None  # a day range is not an hours window


def test_an_hours_window_is_read_leniently_and_named_when_unknown():
    from dashboard.components.url_state import parse_window

    assert parse_window("1h") == ("1h", 1, None)
    assert parse_window(None) == ("24h", 24, None)
    token, hours, problem = parse_window("7d")
    assert (token, hours) == ("24h", 24)
    assert problem is not None and "'7d'" in problem and "last 24 hours" in problem
