"""A fast rebuild's parallel folds (``projections.bulk.fold_all`` with more than one process):
the partitions are shared out evenly, and a child that fails says why instead of hanging or
answering a wrong count. (That the children's tables equal the live path's is
tests/integration/test_rebuild_fast.py, ``jobs=2``.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.children import share_out
from projections.bulk import PartitionJob, fold_all


def _job(partition: str, upto: int, schema: str = "s") -> PartitionJob:
    return PartitionJob("postgresql://nowhere/db", schema, "scratch", "queue", partition, upto)


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=12),
    processes=st.integers(min_value=1, max_value=6),
)
def test_every_partition_goes_to_exactly_one_child_and_the_loads_are_even(
    sizes: list[int], processes: int
) -> None:
    jobs = [_job(f"p{i}", size) for i, size in enumerate(sizes)]
    shares = share_out(jobs, processes, size=lambda job: job.upto)
    assert len(shares) == min(processes, len(jobs))
    dealt = [job.partition for share in shares for job in share]
    assert sorted(dealt) == sorted(job.partition for job in jobs)
    loads = [sum(job.upto for job in share) for share in shares]
    # Greedy, biggest first: no child carries more than the lightest one plus the biggest
    # single partition.
    assert max(loads) - min(loads) <= max(sizes)
    assert all(share for share in shares)


def _fold_children() -> list[int]:
    """Our children that are fold processes (``python -m projections.bulk``)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == os.getpid() and b"projections.bulk" in cmdline:
            found.append(int(status.parent.name))
    return found


async def test_a_failing_child_fails_the_fold_with_its_reason_and_stops_the_others() -> None:
    # The first child refuses its schema at once; the second would retry an unreachable
    # database for a long while, and must not be left running.
    jobs = [_job("520102", 10, schema="not a schema; --"), _job("520103", 20)]
    with pytest.raises(RuntimeError, match=r"rebuild fold process failed.*schema"):
        await fold_all(jobs, processes=2)
    assert _fold_children() == []
