"""Queues shared between processes: start methods, MPMC stress, join across processes."""
import multiprocessing as mp
import os
import random

import pytest

import shmring
from segments import segment_exists

pytestmark = pytest.mark.timeout(120)


def _echo_child(q_in, q_out):
    q_out.put(("child", os.getpid(), q_in.get(timeout=30)))
    q_in.close()
    q_out.close()


def test_a_queue_passed_to_a_process_works_under_every_start_method(make_queue, start_method):
    ctx = mp.get_context(start_method)
    to_child, from_child = make_queue(4), make_queue(4)
    p = ctx.Process(target=_echo_child, args=(to_child, from_child))
    p.start()
    to_child.put({"hello": start_method})
    tag, pid, payload = from_child.get(timeout=60)
    p.join(timeout=60)
    assert (tag, pid, payload) == ("child", p.pid, {"hello": start_method})
    assert p.exitcode == 0
    # the child closed its handles; only the creator unlinks
    assert segment_exists(to_child.name) and segment_exists(from_child.name)
    to_child.put(1)
    assert to_child.get() == 1


def _report_participants(q, out, ack):
    out.put(q.stats()["participants"])
    ack.get(timeout=30)  # stay registered until the parent has looked


def test_a_forked_child_registers_as_a_participant_of_its_own(make_queue):
    q, out, ack = make_queue(4), make_queue(4), make_queue(4)
    before = q.stats()["participants"]
    p = mp.get_context("fork").Process(target=_report_participants, args=(q, out, ack))
    p.start()
    seen_by_child = out.get(timeout=30)
    ack.put("done")
    p.join(timeout=30)
    assert seen_by_child == before + 1


def _worker(q, n):
    for _ in range(n):
        q.get(timeout=30)
        q.task_done()


def test_join_waits_for_task_done_in_other_processes(make_queue, start_method):
    q = make_queue(100)
    ctx = mp.get_context(start_method)
    workers = [ctx.Process(target=_worker, args=(q, 50)) for _ in range(2)]
    for w in workers:
        w.start()
    q.put_many(range(100))
    assert q.join(timeout=60) is True
    for w in workers:
        w.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]


# ---- MPMC stress: no loss, no duplicate, per-producer order ----

# Children block at most this long: a lost message shows as their error, not a hang.
CHILD_TIMEOUT = 60


def _stress_producer(q, producer_id, count, seed):
    rng = random.Random(seed)
    i = 0
    while i < count:
        if rng.random() < 0.5:
            q.put((producer_id, i), timeout=CHILD_TIMEOUT)
            i += 1
        else:
            n = min(rng.randint(1, 64), count - i)
            q.put_many([(producer_id, j) for j in range(i, i + n)], timeout=CHILD_TIMEOUT)
            i += n


def _stress_consumer(q, results, n_producers, count, seed):
    rng = random.Random(seed)
    seen = [bytearray(count) for _ in range(n_producers)]
    last = [-1] * n_producers
    errors = []
    sentinels = 0
    while not sentinels:
        if rng.random() < 0.5:
            batch = q.get_many(max_items=rng.randint(1, 64), timeout=CHILD_TIMEOUT)
        else:
            batch = [q.get(timeout=CHILD_TIMEOUT)]
        for item in batch:
            if item is None:
                sentinels += 1
                continue
            producer, seq = item
            if seq <= last[producer]:
                errors.append(f"order: producer {producer} seq {seq} after {last[producer]}")
            last[producer] = seq
            if seen[producer][seq]:
                errors.append(f"duplicate: producer {producer} seq {seq}")
            seen[producer][seq] = 1
    q.put_many([None] * (sentinels - 1), timeout=CHILD_TIMEOUT)  # one sentinel each: hand back extras
    results.put((errors[:10], [bytes(s) for s in seen]))


def run_stress(n_producers, n_consumers, per_producer, maxsize, ctx_name="fork", wait=100):
    ctx = mp.get_context(ctx_name)
    q = shmring.Queue(maxsize, 64)
    results = ctx.Queue()
    consumers, producers = [], []
    try:
        consumers = [ctx.Process(target=_stress_consumer, args=(q, results, n_producers, per_producer, 100 + c))
                     for c in range(n_consumers)]
        producers = [ctx.Process(target=_stress_producer, args=(q, p, per_producer, p))
                     for p in range(n_producers)]
        for proc in consumers + producers:
            proc.start()
        for proc in producers:
            proc.join(timeout=wait)
            assert proc.exitcode == 0
        q.put_many([None] * n_consumers, timeout=CHILD_TIMEOUT)
        reports = [results.get(timeout=wait) for _ in consumers]
        for proc in consumers:
            proc.join(timeout=CHILD_TIMEOUT)
            assert proc.exitcode == 0
    finally:
        for proc in consumers + producers:
            if proc.is_alive():
                proc.kill()
        q.close()
    errors = [e for errs, _ in reports for e in errs]
    assert not errors
    for producer in range(n_producers):
        counts = [0] * per_producer
        for _, seen in reports:
            for seq, bit in enumerate(seen[producer]):
                counts[seq] += bit
        assert min(counts) == 1, f"producer {producer}: a message was lost"
        assert max(counts) == 1, f"producer {producer}: a message was delivered twice"


def test_mpmc_stress_3x3_processes_no_loss_no_duplicate_in_order():
    run_stress(3, 3, 100_000, maxsize=1000)


def test_mpmc_stress_tiny_ring_maximises_contention():
    run_stress(3, 3, 20_000, maxsize=3)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mpmc_soak_4x4_processes_four_million_messages():
    run_stress(4, 4, 1_000_000, maxsize=100, wait=400)
