"""Side-by-side benchmarks: shmring beside the queues people use today.

    shmring bench [--quick] [--payloads 64,1024] [--only WORDS] [--json PATH] [--plot PATH.png]
"""
import os

# numpy's BLAS starts a spinning thread pool at import; no row does linear
# algebra, and those threads would steal the pinned CPUs from the rows.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
