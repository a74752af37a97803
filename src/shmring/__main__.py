"""python -m shmring: the same as the `shmring` command."""
import sys

from shmring.cli import main

sys.exit(main())
