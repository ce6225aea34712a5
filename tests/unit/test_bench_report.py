"""The bench's account of CPU time a virtual machine lost to its neighbours while a section ran, and
its sections leaving the process environment as they found it."""

import os

import pytest

from training.bench.report import cpu_times, environment_restored, stolen_share

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


def test_a_section_leaves_the_environment_as_it_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_BENCH_KEPT", "before")
    monkeypatch.setenv("RAQIB_BENCH_DROPPED_INSIDE", "here")
    monkeypatch.delenv("RAQIB_BENCH_ADDED_INSIDE", raising=False)
    before = dict(os.environ)
    with environment_restored():
        os.environ["RAQIB_BENCH_KEPT"] = "changed"
        os.environ["RAQIB_BENCH_ADDED_INSIDE"] = "1"
        del os.environ["RAQIB_BENCH_DROPPED_INSIDE"]
    assert dict(os.environ) == before
    with pytest.raises(RuntimeError), environment_restored():  # a failing section too
        os.environ["RAQIB_BENCH_ADDED_INSIDE"] = "1"
        raise RuntimeError("section failed")
    assert dict(os.environ) == before


def test_the_dask_sections_cluster_no_longer_sets_single_threaded_blas_for_later_sections() -> None:
    # What happened: LocalCluster set OMP/MKL/OPENBLAS_NUM_THREADS=1 in the bench's own process, and
    # the retrain section's `raqib train` subprocesses trained a different model with one BLAS thread.
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    before = {name: os.environ.get(name) for name in names}
    with (
        environment_restored(),
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None),
    ):
        inside = {name: os.environ.get(name) for name in names}
    assert {name: os.environ.get(name) for name in names} == before
    assert inside != before or all(v is not None for v in before.values())  # the cluster did set them


def test_a_training_child_s_peak_memory_is_its_own_not_its_parent_s() -> None:
    # The bench process is big when the training section runs after the in-process sections; the
    # kernel's wait4 figure for a child carries that size along. The child's own peak must not.
    import sys

    import numpy as np

    from training.bench.http import rss_mb
    from training.bench.run import run_watching_memory

    held = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched: this process is now well over 300 MB
    assert rss_mb(os.getpid()) > 300
    small = run_watching_memory([sys.executable, "-c", "import time; time.sleep(1.0)"], interval=0.05)
    big = run_watching_memory(
        [sys.executable, "-c", "import time; b = b'x' * (200 * 1024 * 1024); time.sleep(1.0)"], interval=0.05
    )
    assert small["returncode"] == 0 and big["returncode"] == 0
    assert 0 < small["peak_main_hwm_mb"] < 100
    assert big["peak_main_hwm_mb"] > 200 > small["peak_main_hwm_mb"]
    assert big["peak_tree_pss_mb"] > 150
    del held


def test_the_training_section_reads_each_stage_s_seconds_from_raqib_train_s_line() -> None:
    from training.bench.run import stage_seconds

    log = (
        "trained in 95.2 s on 13447 rows\n"
        "time by stage: gathering_data 6.2 s, candidate_search 31.0 s\n"
        "registered\n"
    )
    assert stage_seconds(log) == {"gathering_data": 6.2, "candidate_search": 31.0}
    assert list(stage_seconds(log)) == ["gathering_data", "candidate_search"]
    assert stage_seconds("trained in 95.2 s on 13447 rows\n") == {}
