"""Regression tests for the hostile review of shmring.Topic (one per finding; the
C ones are in tests/c/test_topic.c)."""
import pytest

import shmring

pytestmark = pytest.mark.timeout(60)


def test_filtering_a_subscriber_after_its_topic_closed_is_refused(make_topic):
    # finding 2: it reached shmring_topic_filter on the freed ring
    topic = make_topic(8, 16)
    sub = topic.subscribe(b"a")
    topic.close()
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.subscribe(b"b")
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.unsubscribe(b"a")
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.recv(block=False)
