"""The thread policy's choices (neurofm.threads): a fair share of the cores, never a collapse."""

from __future__ import annotations

import pytest
import torch

from neurofm import threads
from neurofm.threads import ThreadPolicy, choose_threads, other_runnable, requested_threads


@pytest.mark.parametrize(
    ("cores", "others", "ceiling", "expected"),
    [
        (2, 0.0, 2, 2),  # idle machine: every core, as torch's default
        (2, 1.0, 2, 1),  # one CPU-bound neighbour: the free core
        (2, 2.0, 2, 1),  # two neighbours: never fewer than one thread
        (2, 7.0, 2, 1),
        (8, 3.0, 8, 5),
        (8, 2.4, 8, 6),  # rounds to the nearest whole thread
        (8, 2.6, 8, 5),
        (8, 0.0, 4, 4),  # a lower ceiling set by the caller is kept
        (2, None, 2, 2),  # load unknown (no /proc): the ceiling
        (2, 0.0, 16, 2),  # never more than the cores
    ],
)
def test_free_cores_at_least_one(cores, others, ceiling, expected):
    assert choose_threads(cores, others, ceiling).threads == expected


def test_a_fixed_count_wins():
    choice = choose_threads(2, 5.0, 2, requested=3)
    assert choice.threads == 3
    assert "NEUROFM_NUM_THREADS" in choice.reason


def test_requested_threads_reads_the_environment():
    assert requested_threads({}) is None
    assert requested_threads({"NEUROFM_NUM_THREADS": "3"}) == 3
    assert requested_threads({"OMP_NUM_THREADS": "1"}) == 1
    assert requested_threads({"NEUROFM_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}) == 2
    with pytest.raises(ValueError, match=r"NEUROFM_NUM_THREADS='two': expected a positive"):
        requested_threads({"NEUROFM_NUM_THREADS": "two"})
    with pytest.raises(ValueError, match="NEUROFM_NUM_THREADS='0'"):
        requested_threads({"NEUROFM_NUM_THREADS": "0"})


def _fake_proc(root, runnable: int, own_states: list[str]):
    (root / "loadavg").write_text(f"1.00 0.50 0.25 {runnable}/321 4242\n")
    for i, state in enumerate(own_states):
        task = root / "self" / "task" / str(100 + i)
        task.mkdir(parents=True)
        # comm with a space and a parenthesis, as the kernel may write it
        task.joinpath("stat").write_text(f"{100 + i} (pt main) {state} 1 2 3\n")


def test_other_runnable_subtracts_this_process(tmp_path):
    _fake_proc(tmp_path, runnable=5, own_states=["R", "R", "S"])
    assert other_runnable(samples=3, interval=0, proc=tmp_path) == 3.0
    assert other_runnable(proc=tmp_path / "missing") != other_runnable(proc=tmp_path / "missing")


def test_other_runnable_reads_the_real_proc():
    others = other_runnable(samples=1)
    assert others == others and others >= 0  # not nan on Linux


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_policy_follows_the_machine_after_two_looks(monkeypatch, restore_threads):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "cpu_cores", lambda: 2)
    load = iter([0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    monkeypatch.setattr(threads, "other_runnable", lambda: next(load))
    policy = ThreadPolicy(every=0.0, environ={})
    assert policy.start().threads == 2 and torch.get_num_threads() == 2
    assert policy.recheck() == 2  # a neighbour seen once: not yet
    assert policy.recheck() == 1  # seen twice: the free core only
    assert torch.get_num_threads() == 1
    assert policy.recheck() == 1
    assert policy.recheck() == 1  # gone once, back at once: no flapping
    assert policy.recheck() == 1
    assert policy.recheck() == 1
    assert policy.recheck() == 2  # gone twice in a row: every core again
    policy.stop()
    assert torch.get_num_threads() == 2


def test_look_again_is_followed_at_the_next_recheck(monkeypatch, restore_threads):
    """Our own second process ending frees a core: taken at the next step, not 2 looks later."""
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "cpu_cores", lambda: 2)
    load = iter([1.0, 0.0, 1.0, 1.0])
    monkeypatch.setattr(threads, "other_runnable", lambda: next(load))
    policy = ThreadPolicy(every=3600.0, environ={})  # no look of its own in this test
    assert policy.start().threads == 1
    assert policy.recheck() == 1  # not yet time to look
    threads.look_again()
    assert policy.recheck() == 2 and torch.get_num_threads() == 2  # one look, followed
    assert policy.recheck() == 2  # the request was used up: back to the clock
    threads.look_again()
    assert policy.recheck() == 1  # also down, when told
    policy.stop()


def test_policy_respects_a_fixed_count_and_a_lower_ceiling(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "cpu_cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable", lambda: 0.0)
    torch.set_num_threads(1)  # the caller chose one thread (e.g. tests, Jupyter)
    policy = ThreadPolicy(every=0.0, environ={})
    assert policy.start().threads == 1
    torch.set_num_threads(2)
    fixed = ThreadPolicy(every=0.0, environ={"NEUROFM_NUM_THREADS": "1"})
    assert fixed.start().threads == 1
    monkeypatch.setattr(threads, "other_runnable", lambda: 5.0)
    assert fixed.recheck() == 1 and fixed.recheck() == 1
    fixed.stop()
    assert torch.get_num_threads() == 2


def test_cli_threads_option_sets_the_environment(monkeypatch):
    from neurofm.cli import main

    monkeypatch.delenv("NEUROFM_NUM_THREADS", raising=False)
    assert main(["--threads", "3"]) == 0
    import os

    assert os.environ["NEUROFM_NUM_THREADS"] == "3"
    with pytest.raises(SystemExit):
        main(["--threads", "0"])


def test_idle_cores_are_the_cores_others_do_not_run_on(monkeypatch):
    from neurofm import threads

    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    for others, idle in ((0.0, 4), (1.4, 3), (1.6, 2), (9.0, 0), (float("nan"), 4)):
        monkeypatch.setattr(threads, "other_runnable", lambda o=others: o)
        assert threads.idle_cores() == idle
