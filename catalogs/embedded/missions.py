"""When each platform flew, as the embedded catalog serves it: no scene outside a platform's life.

The embedded city mimics Microsoft Planetary Computer (PC), so a month gets scenes only from the
platforms that were acquiring then *and* only once PC's archive of the collection begins. A month
with no live platform yields no scenes (acquisition then ends as a typed skipped month).

Sources of the dates below:
- Sentinel-2A: launched 2015-06-23 (ESA). PC's ``sentinel-2-l2a`` is "the global Sentinel-2
  archive, from 2016 to the present, processed to L2A" and holds tile 18TWL (New York) from
  November 2016: ``S2_ARCHIVE_START`` (kept equal to ``nyceo.paths.FIRST_DATA_MONTH`` by a test).
  On 2025-01-21 Sentinel-2C took over Sentinel-2A's place in the constellation (ESA).
- Sentinel-2B: launched 2017-03-07 (ESA); first images in March 2017. Still acquiring (ESA mission
  status, 2025), and PC serves S2B scenes after 2022, so no end date here. (Issue 10 said "S2B
  2017–2022 as on Planetary Computer"; we found no such end; an end in 2022 would invent a
  10-day revisit for 2022-2024.)
- Sentinel-2C: launched 2024-09-05; operational in Sentinel-2A's orbit slot from 2025-01-21 (ESA).
- Sentinel-1A: launched 2014-04-03; PC's ``sentinel-1-rtc`` begins 2014-10-10 (its collection
  extent). Still acquiring (no end here).
- Sentinel-1B: routine products from 2016-09-26; failed on 2021-12-23 (ESA: power anomaly, mission
  ended), the date PC's archive of S1B ends.
- Sentinel-1C: launched 2024-12-05; products to users from 2025-05-20 (ESA).
- Copernicus DEM GLO-30: static (one item per tile dated 2021-04-22 as on PC): always served.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc
MISSIONS_VERSION = 1   # part of each monthly unit's fingerprint: bump when a date below changes

S2_ARCHIVE_START = dt.datetime(2016, 11, 1, tzinfo=UTC)
S1_ARCHIVE_START = dt.datetime(2014, 10, 10, tzinfo=UTC)


@dataclass(frozen=True)
class Mission:
    """One platform's acquiring life [start, end); ``end=None``: still acquiring."""

    platform: str
    start: dt.datetime
    end: dt.datetime | None = None

    def live(self, when: dt.datetime) -> bool:
        return self.start <= when and (self.end is None or when < self.end)


S2A = Mission("Sentinel-2A", dt.datetime(2015, 6, 23, tzinfo=UTC), dt.datetime(2025, 1, 21, tzinfo=UTC))
S2B = Mission("Sentinel-2B", dt.datetime(2017, 3, 7, tzinfo=UTC))
S2C = Mission("Sentinel-2C", dt.datetime(2025, 1, 21, tzinfo=UTC))
S1A = Mission("S1A", dt.datetime(2014, 10, 10, tzinfo=UTC))
S1B = Mission("S1B", dt.datetime(2016, 9, 26, tzinfo=UTC), dt.datetime(2021, 12, 23, tzinfo=UTC))
S1C = Mission("S1C", dt.datetime(2025, 5, 20, tzinfo=UTC))

# The two Sentinel-2 orbit slots, 180 degrees apart (5-day revisit together): even and odd cycles.
S2_SLOTS: tuple[tuple[Mission, ...], tuple[Mission, ...]] = ((S2A, S2C), (S2B,))
# Sentinel-1: the 12-day repeat of the first slot, and the platforms 6 days apart from it.
S1_SLOTS: tuple[tuple[Mission, ...], tuple[Mission, ...]] = ((S1A,), (S1B, S1C))


def archive_until(now: dt.datetime | None = None) -> dt.datetime:
    """The embedded archive's "now": the start of the current UTC day (no scene of the future;
    a day's granularity, so a unit of the current month is rebuilt at most once a day)."""
    now = now or dt.datetime.now(UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=UTC)


def month_cutoff(year: int, month: int, now: dt.datetime | None = None) -> dt.datetime | None:
    """``archive_until`` when it falls before the end of the month (a current or future month),
    else None (the month is complete)."""
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    until = archive_until(now)
    return until if until < end else None


def _flying(slot: tuple[Mission, ...], when: dt.datetime, archive_start: dt.datetime) -> str | None:
    if when < archive_start:
        return None
    return next((m.platform for m in slot if m.live(when)), None)


def s2_platform(cycle: int, when: dt.datetime) -> str | None:
    """The Sentinel-2 platform acquiring revisit ``cycle`` at ``when`` on PC, or None."""
    return _flying(S2_SLOTS[cycle % 2], when, S2_ARCHIVE_START)


def s1_platform(slot: int, when: dt.datetime) -> str | None:
    """The Sentinel-1 platform of ``slot`` (0: 12-day base, 1: 6 days later) at ``when``, or None."""
    return _flying(S1_SLOTS[slot], when, S1_ARCHIVE_START)
