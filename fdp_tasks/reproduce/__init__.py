"""Rebuilding a recorded code run and checking its outputs bit for bit (`fdp reproduce`,
`doit reproduce`).

A run is rebuilt from what was recorded with it: the code repository at its commit (a
temporary git worktree), its working config with the machine's own values (registry URL,
data store, `local_repo`, job directory) rewritten, its script expanded again from the
source config with the values its variables took, and its inputs fetched by SHA-1 (from the
local data store, else from a remote). The script runs as `fdp run` runs it, served by the
loopback registry, but against a scratch registry and data store that are thrown away, so
nothing is registered in the user's registry. Each output's SHA-1 is then compared with the
recorded one.
"""

from __future__ import annotations

from fdp_tasks.reproduce.rebuild import Outcome, OutputCheck, reproduce, run_of

__all__ = ["Outcome", "OutputCheck", "reproduce", "run_of"]
