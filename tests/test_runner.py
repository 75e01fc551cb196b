"""The one runner for many runs: order, threads, processes, executors, chunking."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from mechsim import ValidationError
from mechsim.runner import MAX_CHUNK, chunk_ranges, map_chunks, positive


def square_all(values):
    return [v * v for v in values]


@pytest.mark.parametrize("how", [dict(workers=1), dict(workers=2), dict(workers=2,
                                                                         processes=True)])
def test_outcomes_come_back_in_chunk_order_whatever_the_workers(how):
    chunks = [(list(range(k, k + 3)),) for k in range(0, 30, 3)]
    got = map_chunks(square_all, chunks, sizes=[3] * 10, progress=False, **how)
    assert got == [square_all(c[0]) for c in chunks]


def test_an_executor_gets_the_chunks_instead():
    chunks = [([1, 2],), ([3],)]
    with ThreadPoolExecutor(2) as pool:
        assert map_chunks(square_all, chunks, sizes=[2, 1], workers=7, executor=pool,
                          progress=False) == [[1, 4], [9]]


def test_chunks_cover_every_run_once_and_stay_small():
    for n, workers in ((1, 1), (10, 2), (10_000, 2), (7, 16)):
        chunks = chunk_ranges(n, workers)
        assert [i for c in chunks for i in c] == list(range(n))
        assert max(len(c) for c in chunks) <= MAX_CHUNK
    assert [len(c) for c in chunk_ranges(10, 1, chunk_size=4)] == [4, 4, 2]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_counts_must_be_positive_integers(value):
    with pytest.raises(ValidationError, match="`workers` must be a positive integer"):
        positive("workers", value, 1)
