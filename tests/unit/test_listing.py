"""Prefetched: a listing running ahead in a thread keeps order, raises its errors, stops when left."""

import threading
import time

import pytest

from dataprotection.listing import Prefetched


def test_items_arrive_in_order_across_batches():
    with Prefetched(iter(range(2_345)), batch=100, depth=2) as items:
        assert list(items) == list(range(2_345))


def test_an_error_is_raised_where_the_items_stop():
    def listing():
        yield from range(250)
        raise RuntimeError("ListObjectsV2 failed")

    seen = []
    with pytest.raises(RuntimeError, match="ListObjectsV2 failed"), Prefetched(listing(), batch=100) as items:
        for item in items:
            seen.append(item)
    assert seen == list(range(250))


def test_leaving_early_stops_the_thread():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    with Prefetched(endless(), batch=10, depth=2) as items:
        assert next(items) == 0
    time.sleep(0.5)
    count = len(produced)
    time.sleep(0.5)
    assert len(produced) == count  # nothing more is produced once closed
    assert not any(t.name == "listing-prefetch" and t.is_alive() for t in threading.enumerate())


def test_the_first_batch_is_fetched_before_anyone_asks():
    started = threading.Event()

    def listing():
        started.set()
        yield "a"

    items = Prefetched(listing())
    assert started.wait(2)
    assert list(items) == ["a"]
