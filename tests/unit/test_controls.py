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
