"""Persistence rule (MapBiomas-style): provisional -> confirmed, reverted -> dropped; yoy support."""

from __future__ import annotations

import numpy as np

from nyceo.change import codes
from nyceo.change.persistence import mom_neighbours, mom_status, yoy_neighbours, yoy_status

K = 5
# pixels: 0 changed 1->2, 1 changed 3->1, 2 no change, 3 uncertain, 4 nodata
T = np.array([codes.transition_code(1, 2, K), codes.transition_code(3, 1, K), codes.NO_CHANGE,
              codes.UNCERTAIN, codes.NODATA], np.uint8)


def test_neighbour_months():
    assert mom_neighbours("2024-12", 2) == ["2025-01", "2025-02"]
    before, after = yoy_neighbours("2024-07", 1)
    assert before == ["2023-06", "2023-08"] and after == ["2024-06", "2024-08"]


def test_month_over_month_is_provisional_until_the_next_month_agrees():
    assert mom_status(T, K, [], 1).tolist() == [codes.PERSIST_PROVISIONAL, codes.PERSIST_PROVISIONAL,
                                                codes.PERSIST_NONE, codes.PERSIST_NONE, codes.NODATA]
    nxt = np.array([2, 1, 0, 0, 0], np.uint8)  # both changes persist
    assert mom_status(T, K, [nxt], 1)[:2].tolist() == [codes.PERSIST_CONFIRMED] * 2


def test_a_provisional_change_that_reverts_is_dropped():
    nxt = np.array([1, 4, 0, 0, 0], np.uint8)  # pixel 0 back to class 1; pixel 1 went elsewhere
    out = mom_status(T, K, [nxt], 1)
    assert out[0] == codes.PERSIST_DROPPED and out[1] == codes.PERSIST_PROVISIONAL


def test_a_longer_window_needs_every_month_and_drops_on_any_return():
    agree = np.array([2, 1, 0, 0, 0], np.uint8)
    assert mom_status(T, K, [agree], 2)[0] == codes.PERSIST_PROVISIONAL  # window not complete yet
    assert mom_status(T, K, [agree, agree], 2)[0] == codes.PERSIST_CONFIRMED
    back = np.array([1, 1, 0, 0, 0], np.uint8)
    assert mom_status(T, K, [agree, back], 2).tolist()[:2] == [codes.PERSIST_DROPPED, codes.PERSIST_CONFIRMED]


def test_year_over_year_uses_the_months_around_both_ends():
    before_ok = np.array([1, 3, 0, 0, 0], np.uint8)
    after_ok = np.array([2, 1, 0, 0, 0], np.uint8)
    assert yoy_status(T, K, [], [])[0] == codes.PERSIST_PROVISIONAL
    assert yoy_status(T, K, [before_ok], [])[0] == codes.PERSIST_PROVISIONAL  # no support around M yet
    assert yoy_status(T, K, [before_ok], [after_ok])[:2].tolist() == [codes.PERSIST_CONFIRMED] * 2
    already = np.array([2, 3, 0, 0, 0], np.uint8)  # pixel 0 was already class 2 a month before M-12
    out = yoy_status(T, K, [already, before_ok], [after_ok])
    assert out[0] == codes.PERSIST_DROPPED and out[1] == codes.PERSIST_CONFIRMED
