"""`fdp init`: set up a project directory (config.yaml, dodo.py, local registry, token)."""

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
    python3 ${{{{CONFIG_DIR}}}}/model.py

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

from fdp_tasks.graph.dodo import *  # noqa: F403
'''


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="set up a project: config.yaml, dodo.py, local registry and token",
        description="Create .fdp/settings.yaml, a starter config.yaml, model.py and dodo.py "
        "(existing files are kept), the local registry and the local token. No questions asked.",
    )
    parser.add_argument("directory", nargs="?", default=".", help="project directory")
    parser.add_argument("--name", help="your name, recorded as the author of your runs")
    parser.add_argument("--identifier", help="your ORCID, ROR or GitHub URL")
    parser.add_argument("--namespace", help="your default namespace")
    parser.add_argument("--registry", help="local registry: a SQLite file or a database URL")
    parser.add_argument("--data-store", help="local data store directory")
    parser.add_argument("--remote", help="URL or directory of the remote named origin")
    parser.add_argument("--remote-token-file", help="file holding the remote's token")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project, write_yaml

    root = Path(args.directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    project = Project.load(root)
    settings = project.settings
    user = dict(settings.get("user") or {})
    for key in ("name", "identifier", "namespace"):
        if getattr(args, key):
            user[key] = getattr(args, key)
    if user:
        settings["user"] = user
    if args.registry:
        settings["registry"] = args.registry
    if args.data_store:
        settings["data_store"] = args.data_store
    if args.remote:
        remote = {"url": args.remote}
        if args.remote_token_file:
            remote["token_file"] = args.remote_token_file
        settings.setdefault("remotes", {})["origin"] = remote
    project.save_settings()
    home_user = project.home / "user.yaml"
    if not home_user.exists() and user:
        write_yaml(home_user, user)
    project = Project.load(root)
    namespace = project.user.namespace or (project.user.name or "me").split()[0].lower()
    config = root / "config.yaml"
    if not config.exists():
        config.write_text(
            CONFIG_TEMPLATE.format(description=f"{root.name} model run", namespace=namespace),
            encoding="utf-8",
        )
        print(f"wrote {config}")
    for name, text in (("dodo.py", DODO), ("model.py", MODEL), (".gitignore", GITIGNORE)):
        target = root / name
        if not target.exists():
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    project.local_token()
    me = project.user
    print(
        f"author         {me.name}"
        + (
            f" ({me.identifier})"
            if me.identifier
            else " (set --name and --identifier to record your name and ORCID)"
        )
    )
    print(f"local registry {project.registry_db}")
    print(f"data store     {project.data_store.root}")
    mode = oct(os.stat(project.token_path).st_mode & 0o777)
    print(f"token file     {project.token_path} (mode {mode})")
    return 0
