"""`fdp push [CONFIG]`: copy the project's outputs and their provenance to the remote."""

from fdp_tasks.cli.doit_command import doit_command

add_parser = doit_command(
    "push",
    "push the outputs of the project's runs, with their provenance, to the remote",
    ["push"],
    keep_going=True,
)
