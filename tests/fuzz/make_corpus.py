"""Regenerate the seed corpus: real segments in interesting states.

    python tests/fuzz/make_corpus.py        (needs shmring importable)

Small rings (a few KiB each) so that mutations hit header fields, counters,
slot words and participant entries alike; one records ring is as small as 16-bit
slot words allow (65536 slots, ~200 KiB).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import shmring  # noqa: E402
from segments import read_segment  # noqa: E402

OUT = Path(__file__).resolve().parent / "corpus"


def save(name, q):
    (OUT / name).write_bytes(read_segment(q.name))
    q.close()


def main():
    OUT.mkdir(exist_ok=True)
    save("empty", shmring.Queue(4, 8, max_participants=2))
    q = shmring.Queue(4, 8, max_participants=2)
    for i in range(3):
        q.put_bytes(bytes([i]) * (i + 2))
    save("three-messages", q)
    q = shmring.Queue(5, 8, max_participants=4)
    for lap in range(13):  # positions well past the capacity: wrapped slot words
        q.put_bytes(b"lap%d" % lap)
        q.get_bytes()
    q.put_bytes(b"x" * 8)
    save("wrapped", q)
    q = shmring.Queue(3, 16, max_participants=2)
    q.put_many([1, 2, 3])
    q.get()
    q.task_done()
    save("full-then-one-read", q)
    import numpy as np

    q = shmring.Queue(6, dtype=np.dtype([("t", "<i4"), ("v", "<f4", (2,))]), max_participants=2)
    for lap in range(4):
        q.put_array(np.zeros(3, q.dtype))
        q.get_array(4)
    save("records-wrapped", q)
    # the smallest records ring with 16-bit slot words (65536 slots), a lap and a bit in
    q = shmring.Queue(1 << 16, dtype=np.dtype("u1"), max_participants=2)
    q.put_array(np.zeros(1 << 16, q.dtype))
    q.get_array(1 << 16)
    q.put_array(np.arange(5, dtype=q.dtype))
    q.get_array(2)
    save("records-16-bit-words", q)
    t = shmring.Topic(8, 16, max_topic_len=4, max_subscribers=2, max_participants=2)
    sub, pub = t.subscribe(b"a1"), t.publisher()
    for i in range(11):  # a lap and a bit, the subscriber keeping up
        pub.publish_bytes(b"a%d" % (i % 3), b"m%d" % i)
        if i % 4 == 3:
            sub.recv_many_bytes(block=False)
    save("topic-block", t)
    t = shmring.Topic(4, 8, policy="overwrite", max_topic_len=2, max_subscribers=1, max_participants=2)
    t.subscribe()
    t.publisher().publish_many_bytes([(b"k", b"%d" % i) for i in range(9)])
    save("topic-overwrite", t)
    print("corpus:", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
