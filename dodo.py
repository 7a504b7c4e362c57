"""doit entry point for a FAIR Data Pipeline project.

    doit                         register, pull and run what ./config.yaml asks for
    doit config=other.yaml push  ... and push the outputs to the remote
    doit list                    the tasks (`fdp status` says which would run, and why)
"""

from fdp_tasks.dodo import *  # noqa: F403
