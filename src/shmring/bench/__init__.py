"""Side-by-side benchmarks: shmring beside the queues people use today.

    python -m shmring.bench [--quick] [--suite messages|records|all]
"""
