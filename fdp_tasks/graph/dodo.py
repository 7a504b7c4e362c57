"""The dodo.py entry of earlier releases (`from fdp_tasks.graph.dodo import *`): the same as
`fdp_tasks.dodo`, kept so that the dodo.py files they wrote go on working."""

from fdp_tasks.dodo import *  # noqa: F403
from fdp_tasks.dodo import __all__  # noqa: F401
