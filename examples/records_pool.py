"""A producer process streams market ticks (numpy records) to a pool of consumer
processes that aggregate them with numpy, zero-copy.

    python examples/records_pool.py

Each consumer reads batches in place with `view()` (no copy out of the ring),
keeps per-side totals, and sends them back through a small results queue; the
parent combines them and checks against the same computation done directly.
"""
import multiprocessing as mp

import numpy as np

import shmring

TICK = np.dtype([("ts", "<i8"), ("price", "<f8"), ("qty", "<i4"), ("side", "u1")])
N_TICKS, WORKERS, BATCH = 2_000_000, 4, 4096


def make_ticks(seed, n):
    rng = np.random.default_rng(seed)
    ticks = np.empty(n, TICK)
    ticks["ts"] = np.arange(n)
    ticks["price"] = 100 + rng.standard_normal(n).cumsum() * 0.01
    ticks["qty"] = rng.integers(1, 100, n)
    ticks["side"] = rng.integers(0, 2, n)
    return ticks


def producer(ticks_q, seed):
    ticks = make_ticks(seed, N_TICKS)
    for start in range(0, N_TICKS, BATCH):
        with ticks_q.reserve(min(BATCH, N_TICKS - start)) as slots:  # write straight into the ring
            slots[:] = ticks[start:start + len(slots)]
            # a reservation may be shorter than asked (at the end of the ring):
            # put the remainder of this batch right after
        rest = ticks[start + len(slots):start + BATCH]
        ticks_q.put_array(rest)


def worker(ticks_q, results_q):
    qty = np.zeros(2)
    notional = np.zeros(2)
    stops = 0
    while not stops:
        with ticks_q.view(BATCH) as batch:  # read in place, released at the end of the block
            ticks = batch[batch["ts"] >= 0]
            stops = len(batch) - len(ticks)  # stop records have ts = -1
            for side in (0, 1):
                mine = ticks["side"] == side
                qty[side] += ticks["qty"][mine].sum()
                notional[side] += (ticks["qty"][mine] * ticks["price"][mine]).sum()
    if stops > 1:  # took another worker's stop record too: hand it back
        ticks_q.put_array(stop_records(stops - 1))
    results_q.put((qty.tolist(), notional.tolist()))


def stop_records(n):
    stop = np.zeros(n, TICK)
    stop["ts"] = -1
    return stop


if __name__ == "__main__":
    ticks_q = shmring.Queue(1 << 16, dtype=TICK)
    results_q = shmring.Queue(WORKERS)
    workers = [mp.Process(target=worker, args=(ticks_q, results_q)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    feed = mp.Process(target=producer, args=(ticks_q, 42))
    feed.start()
    feed.join()
    ticks_q.put_array(stop_records(WORKERS))  # one each
    qty, notional = np.zeros(2), np.zeros(2)
    for _ in workers:
        q_part, n_part = results_q.get(timeout=60)
        qty += q_part
        notional += n_part
    for w in workers:
        w.join()
    ticks = make_ticks(42, N_TICKS)
    expected = [ticks["qty"][ticks["side"] == s].sum() for s in (0, 1)]
    assert qty.tolist() == expected, (qty, expected)
    print("VWAP buy %.4f sell %.4f over %d ticks" % (notional[0] / qty[0], notional[1] / qty[1], N_TICKS))
    ticks_q.close()
    results_q.close()
