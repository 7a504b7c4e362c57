"""doit entry point for the SEIRS example (run from the repository root with `doit -f
examples/seirs/dodo.py`, or from this folder with `doit`).

    doit             register the parameters, run model.py, record the outputs
    doit push        ... and push them, with their provenance, to ./remote
    doit picture     draw the provenance of the model's output into provenance.svg, the
                     picture README.md shows (after running the model)
    doit reproduce   rebuild the outputs from their recorded code run in a scratch
                     registry and data store, and compare them bit for bit
"""

import sys
from pathlib import Path

from fdp_tasks.dodo import *  # noqa: F403

HERE = Path(__file__).resolve().parent
OUTPUT = "seirs_example:SEIRS_model/results/model_output/python"
PICTURE = HERE / "provenance.svg"


def task_picture():
    """draw the provenance of the model's output into provenance.svg (README.md shows it)"""
    return {
        "actions": [
            [sys.executable, "-m", "fdp_tasks.cli.main", "prov", OUTPUT]
            + ["--format", "svg", "-o", str(PICTURE)]
        ],
        "task_dep": ["job"],
        "targets": [str(PICTURE)],
        "verbosity": 2,
    }
