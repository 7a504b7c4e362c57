"""`fdp pull [CONFIG]`: register local files and fetch what the config reads from the remote."""

from fdp_tasks.cli.doit_command import doit_command

add_parser = doit_command(
    "pull",
    "register the config's files and pull its inputs (newest versions) from the remote",
    ["register", "pull"],
    keep_going=True,
    refresh=True,
)
