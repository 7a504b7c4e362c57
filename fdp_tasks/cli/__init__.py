"""Command-line interface: one small module per command, registered in main.COMMANDS."""
