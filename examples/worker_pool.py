"""A pool of worker processes draining a shmring queue (the README's example).

    python examples/worker_pool.py
"""
import shmring


def handle(order):                                 # runs in a worker process
    return ("done", order["id"])


if __name__ == "__main__":
    orders = shmring.Queue(maxsize=10_000)          # 1 KiB messages by default
    results = shmring.Queue(maxsize=10_000, msg_size=128)
    with shmring.WorkerPool(handle, orders, workers=4, results=results):
        orders.put_many({"id": i, "sku": "A-1"} for i in range(1000))
        orders.join()                              # every order processed
    print(len(results.get_many(max_items=2000)))   # 1000
    orders.close(); results.close()                # the creator unlinks the memory
