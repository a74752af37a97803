"""python -m shmring.bench: the same as `shmring bench`."""
import sys

from shmring.bench.command import main

sys.exit(main())
