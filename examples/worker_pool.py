"""A pool of worker processes draining a shmring queue (the README's example).

    python examples/worker_pool.py
"""
import multiprocessing as mp

import shmring


def worker(q, results):
    while (order := q.get()) is not None:
        results.put(("done", order["id"]))
        q.task_done()
    q.task_done()


if __name__ == "__main__":
    orders = shmring.Queue(maxsize=10_000)          # 1 KiB messages by default
    results = shmring.Queue(maxsize=10_000, msg_size=128)
    workers = [mp.Process(target=worker, args=(orders, results)) for _ in range(4)]
    for w in workers:
        w.start()
    orders.put_many({"id": i, "sku": "A-1"} for i in range(1000))
    orders.put_many([None] * len(workers))         # one stop signal per worker
    orders.join()                                  # every order processed
    print(len(results.get_many(max_items=2000)))   # 1000
    for w in workers:
        w.join()
    orders.close(); results.close()                # the creator unlinks the memory
