"""Build leases: intermediates are deleted only when no other build runs on the work folder."""

import multiprocessing
import os

from workflows.runlock import BUILDS_DIR, LEASE_ENV, build_lease, discard_intermediates, other_builds


def _frames(tmp_path, n=3):
    frames = [tmp_path / "cals" / f"frame{i}.fits" for i in range(n)]
    frames[0].parent.mkdir(exist_ok=True)
    for frame in frames:
        frame.write_bytes(b"detrended")
    return frames


def test_intermediates_wait_for_the_last_build_to_end(tmp_path):
    work = tmp_path / "work"
    frames = _frames(tmp_path)
    with build_lease(work) as first:
        assert os.environ[LEASE_ENV] == str(first) and other_builds(work) == []
        with build_lease(work) as second:
            assert other_builds(work) == [first]
            assert not discard_intermediates(frames[:2], work=work)  # the first build may still need them
            assert all(f.exists() for f in frames)
        assert os.environ[LEASE_ENV] == str(first) and not second.exists()
        assert all(f.exists() for f in frames)  # the second ended, the first still runs
        assert not discard_intermediates(frames[2:], work=work)  # a later task of this build may need them
        assert all(f.exists() for f in frames)
    assert LEASE_ENV not in os.environ
    assert not any(f.exists() for f in frames) and list((work / BUILDS_DIR).iterdir()) == []


def test_outside_a_build_they_go_at_once(tmp_path):
    work = tmp_path / "work"
    frames = _frames(tmp_path, 2)
    assert LEASE_ENV not in os.environ
    assert discard_intermediates(frames, work=work)  # the plain luigi command: no lease, no other build
    assert not any(f.exists() for f in frames)


def _hold_lease(work, held, release):
    with build_lease(work):
        held.set()
        release.wait(60)


def test_a_build_in_another_process_keeps_them_and_a_dead_one_does_not(tmp_path):
    work = tmp_path / "work"
    frames = _frames(tmp_path, 1)
    fork = multiprocessing.get_context("fork")  # a build of another podiflow command, as luigi's workers fork
    held, release = fork.Event(), fork.Event()
    other = fork.Process(target=_hold_lease, args=(work, held, release))
    other.start()
    try:
        assert held.wait(30) and len(other_builds(work)) == 1
        assert not discard_intermediates(frames, work=work) and frames[0].exists()
    finally:
        release.set()
        other.join(30)
    assert other.exitcode == 0 and not frames[0].exists()  # the other build ended last: it deleted them
    left = work / BUILDS_DIR / "host-999999-dead.lease"  # a killed build's lease: nobody holds it
    left.write_text("")
    assert other_builds(work) == [] and not left.exists()
