"""doit entry point for a FAIR Data Pipeline project.

    doit                         register, pull and run what ./config.yaml asks for
    doit config=other.yaml push  ... and push the outputs to the remote
    doit list / doit info run    the tasks, and why one would run

Copy this file next to a project's config.yaml (`fdp init` does).
"""

from doit import get_var

from fdp_tasks.graph import load_namespace

globals().update(
    load_namespace(get_var("config", "config.yaml"), refresh=bool(get_var("refresh", "")))
)
