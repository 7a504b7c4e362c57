"""The SEIRS model driven by the reference Python API, exactly as its own examples do.

Nothing here knows about fdp-tasks: the token, the working config and the script come from
the FDP_* environment that `fdp run` (or `doit`) sets.
"""

import os
import sys
from pathlib import Path

import data_pipeline_api as pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "seirs"))
from model import plot, read_parameters, simulate, write_csv  # noqa: E402

token = str(os.environ.get("FDP_LOCAL_TOKEN"))
script = os.path.join(str(os.environ.get("FDP_CONFIG_DIR")), "script.sh")
config = os.path.join(str(os.environ.get("FDP_CONFIG_DIR")), "config.yaml")
handle = pipeline.initialise(token, config, script)

parameters = pipeline.link_read(handle, "SEIRS_model/parameters")
model_output = pipeline.link_write(handle, "SEIRS_model/results/model_output/python")
model_plot = pipeline.link_write(handle, "SEIRS_model/results/figure/python")

rows = simulate(read_parameters(parameters))
write_csv(rows, model_output)
plot(rows, model_plot)

pipeline.finalise(token, handle)
