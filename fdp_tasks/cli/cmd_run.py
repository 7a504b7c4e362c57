"""`fdp run [CONFIG]`: bring inputs up to date and run the script if anything changed."""

from fdp_tasks.cli.doit_command import doit_command

add_parser = doit_command(
    "run",
    "run the config's script if its script, inputs or outputs changed",
    ["job"],
    keep_going=False,
)
