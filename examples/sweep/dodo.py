"""doit entry point of the sweep example.

    doit -n 4                    every run of sweep.yaml (there is no config.yaml here), 4 at once
    doit -n 4 executor=dask      ... each on a worker of a Dask cluster (see README.md)
    doit list                    the tasks: `job@examples/sweep/runs/beta-0.3_seed-1.yaml`, ...
"""

from fdp_tasks.dodo import *  # noqa: F403
