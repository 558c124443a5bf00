"""The Agreement page's plotly figures: axes a person can read whatever the data's span."""

from __future__ import annotations

import pandas as pd

from clusterqc import charts


def _over_time(days: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "period": pd.to_datetime(days), "judge": "offline", "prompt_version": "offline-v1",
        "n": [3] * len(days), "agreement": [0.5] * len(days),
    })


def test_one_day_of_data_gets_whole_day_ticks_not_milliseconds() -> None:
    axis = charts.over_time_chart(_over_time(["2026-12-01"])).layout.xaxis
    assert axis.type == "date" and axis.dtick == charts.DAY_MS
    assert "%H" not in axis.tickformat and "%S" not in axis.tickformat and "%L" not in axis.tickformat
    low, high = (pd.Timestamp(x) for x in axis.range)
    assert low <= pd.Timestamp("2026-11-30") and high >= pd.Timestamp("2026-12-02")  # the day sits in the middle


def test_two_close_days_are_two_dates() -> None:
    axis = charts.over_time_chart(_over_time(["2026-12-01", "2026-12-02"])).layout.xaxis
    assert axis.dtick == charts.DAY_MS and axis.tick0.startswith("2026-12-01")


def test_a_long_span_thins_the_ticks_to_about_ten() -> None:
    days = [str(d.date()) for d in pd.date_range("2026-01-01", periods=120, freq="D")]
    axis = charts.over_time_chart(_over_time(days)).layout.xaxis
    assert axis.dtick == 12 * charts.DAY_MS  # 119 days / 10 ticks, rounded up to whole days
