"""The observer pattern across processes: two publishers, two subscribers with
different prefix filters, nothing lost (the README's Topic example).

    python examples/observer.py
"""
import multiprocessing as mp

import shmring

N = 1000  # messages per publisher


def shop(topic, region):
    pub = topic.publisher()
    for i in range(N):
        pub.publish(f"orders.{region}", {"id": i, "region": region})
        if i % 10 == 0:
            pub.publish(f"stock.{region}", {"sku": "A-1", "left": N - i})


def watch(topic, prefixes, ready, results):
    sub = topic.subscribe(*prefixes)        # made in the process that uses it
    ready.set()
    seen = {}
    for key, msg in sub:                    # until the topic is shut down and drained
        seen[key.decode()] = seen.get(key.decode(), 0) + 1
    results.put((prefixes, seen, sub.lagged))


if __name__ == "__main__":
    topic = shmring.Topic(capacity=4096, msg_size=256)    # policy "block": lossless
    results = mp.Queue()
    watchers = {("orders.",): mp.Event(), ("orders.eu", "stock."): mp.Event()}
    subs = [mp.Process(target=watch, args=(topic, p, ready, results)) for p, ready in watchers.items()]
    for s in subs:
        s.start()
    for ready in watchers.values():
        ready.wait()                                       # subscribed: they miss nothing from here
    shops = [mp.Process(target=shop, args=(topic, region)) for region in ("eu", "us")]
    for p in shops:
        p.start()
    for p in shops:
        p.join()
    topic.shutdown()                                       # subscribers drain, then their loops end
    expected = {("orders.",): {"orders.eu": N, "orders.us": N},
                ("orders.eu", "stock."): {"orders.eu": N, "stock.eu": N // 10, "stock.us": N // 10}}
    lost = False
    for _ in subs:
        prefixes, seen, lagged = results.get()
        print(f"{' + '.join(prefixes):<20} received {dict(sorted(seen.items()))}, lagged {lagged}")
        lost |= seen != expected[prefixes] or lagged != 0
    for s in subs:
        s.join()
    topic.close()                                          # the creator unlinks the memory
    print("lost some!" if lost else "nothing lost")
    raise SystemExit(1 if lost else 0)
