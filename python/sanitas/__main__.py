"""``python -m sanitas ...``: the same command line as the ``sanitas`` script (``sanitas.cli``)."""
import sys

from .cli import main

sys.exit(main())
