"""`fdp init`: set up a project (settings, local registry, token; a starter config if new).

`.fdp/` goes to the root of the git repository, as the reference's `fair init` records the
repository root, so that every config in its subfolders shares the settings. In a repository
that already holds FDP configs (someone's model), nothing but `.fdp/` (with a .gitignore of
its own) and a one-line dodo.py (if there is none) is written: no tracked file changes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

CONFIG_TEMPLATE = """\
run_metadata:
  description: {description}
  default_input_namespace: {namespace}
  default_output_namespace: {namespace}
  script: |
    python3 ${{{{REPO_DIR}}}}/model.py

# read:
#   - data_product: some/input
#     use:
#       version: "1.0.0"

write:
  - data_product: results/output
    description: model output
    file_type: csv
"""

MODEL = '''"""A starter model: replace the body with your own; the paths come from the pipeline."""

from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.write("results/output"), "w") as out:
        out.write("x,y\\n0,0\\n1,1\\n")
'''

GITIGNORE = """\
# fdp-tasks state of this project: doit's database, the runs log, the push ledger
.fdp/
"""

DODO = '''"""doit entry point: `doit` registers, pulls and runs; `doit push` pushes outputs."""

from fdp_tasks.dodo import *  # noqa: F403
'''


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="set up a project: settings, local registry and token (and a starter config)",
        description="Create .fdp/settings.yaml at the root of the git repository, the local "
        "registry and the local token; in a folder without FDP configs also a starter "
        "config.yaml and model.py. A one-line dodo.py is added when missing; .fdp/ keeps "
        "itself out of git; existing files are kept. No questions asked.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=".",
        help="a folder of the project (default: here); .fdp/ goes to its git repository's root",
    )
    parser.add_argument("--name", help="your name, recorded as the author of your runs")
    parser.add_argument("--identifier", help="your ORCID, ROR or GitHub URL")
    parser.add_argument(
        "--namespace",
        help="your namespace: where your runs write, and read from, when a config names none",
    )
    parser.add_argument("--input-namespace", help="read from this namespace instead")
    parser.add_argument("--output-namespace", help="write to this namespace instead")
    parser.add_argument("--registry", help="local registry: a SQLite file or a database URL")
    parser.add_argument("--data-store", help="local data store directory")
    parser.add_argument("--remote", help="URL or directory of the remote named origin")
    parser.add_argument("--remote-token-file", help="file holding the remote's token")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import (
        Project,
        checked_token_file,
        fdp_configs,
        ignore_state,
        project_root,
        remote_url,
        write_yaml,
    )

    start = Path(args.directory).resolve()
    start.mkdir(parents=True, exist_ok=True)
    root = project_root(start)
    project = Project.load(root)
    settings = project.settings
    user = dict(settings.get("user") or {})
    for key in ("name", "identifier", "namespace", "input_namespace", "output_namespace"):
        if getattr(args, key):
            user[key] = getattr(args, key)
    if user:
        settings["user"] = user
    if args.registry:
        settings["registry"] = args.registry
    if args.data_store:
        settings["data_store"] = args.data_store
    if args.remote:
        remote = {"url": remote_url(args.remote)}
        if args.remote_token_file:
            token_file = Path(args.remote_token_file).expanduser().resolve()
            remote["token_file"] = str(checked_token_file(token_file, "--remote-token-file"))
        settings.setdefault("remotes", {})["origin"] = remote
    project.save_settings()
    home_user = project.home / "user.yaml"
    if not home_user.exists() and user:
        write_yaml(home_user, user)
    project = Project.load(root)
    print(f"settings       {project.settings_path}")
    existing = fdp_configs(root)
    starters: tuple[tuple[str, str], ...] = (("dodo.py", DODO),)
    if existing:
        shown = ", ".join(str(p.relative_to(root)) for p in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        print(f"FDP configs    {shown}{more} (run one with `fdp run PATH` or `doit config=PATH`)")
    else:
        namespace = project.user.output_namespace or project.user.namespace
        namespace = namespace or (project.user.name or "me").split()[0].lower()
        config = root / "config.yaml"
        config.write_text(
            CONFIG_TEMPLATE.format(description=f"{root.name} model run", namespace=namespace),
            encoding="utf-8",
        )
        print(f"wrote {config}")
        starters += (("model.py", MODEL), (".gitignore", GITIGNORE))
    for name, text in starters:
        target = root / name
        if not target.exists():
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    ignore_state(project.state_dir)
    project.local_token()
    me = project.user
    print(
        f"author         {me.name}"
        + (f" ({me.identifier})" if me.identifier else " (add --identifier to record your ORCID)")
    )
    print(f"local registry {project.registry_db}")
    print(f"data store     {project.data_store.root}")
    mode = oct(os.stat(project.token_path).st_mode & 0o777)
    print(f"token file     {project.token_path} (mode {mode})")
    return 0
