"""`python -m jaxgraph train CONFIG ...`: the same command line as the `jaxgraph` script."""

import sys

from .cli import main

sys.exit(main())
