"""``python -m trainlab.trials``: one local worker process (:class:`~trainlab.trials.LocalExecutor` starts these)."""

import sys

from trainlab.trials.worker import main

if __name__ == "__main__":
    sys.exit(main())
