"""The bench's account of CPU time a virtual machine lost to its neighbours while a section ran."""

import pytest

from training.bench.report import cpu_times, stolen_share

pytestmark = pytest.mark.unit


def test_steal_is_the_eighth_counter_of_the_machine_line_and_total_the_sum_of_eight() -> None:
    stat = "cpu  100 5 20 800 10 0 3 12 0 0\ncpu0 50 2 10 400 5 0 1 6 0 0\n"
    assert cpu_times(stat) == (12, 950)


def test_stolen_share_between_two_readings() -> None:
    before = cpu_times("cpu  100 0 0 800 0 0 0 0 0 0\n")
    after = cpu_times("cpu  160 0 0 820 0 0 0 20 0 0\n")
    assert stolen_share(before, after) == pytest.approx(20 / 100)


@pytest.mark.parametrize("stat", ["", "intr 1 2 3\n", "cpu 1 2 3\n"])
def test_no_reading_where_there_is_no_machine_line(stat: str) -> None:
    assert cpu_times(stat) is None
    assert stolen_share(cpu_times(stat), (1, 2)) is None


def test_no_share_when_no_time_passed() -> None:
    assert stolen_share((5, 100), (5, 100)) is None


def test_this_machine_reads_when_it_is_linux() -> None:
    reading = cpu_times()
    if reading is not None:
        steal, total = reading
        assert 0 <= steal <= total
