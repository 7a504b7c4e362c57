"""`fdp remote add|remove|list`: name the registries to pull from and push to, like git."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from fdp_tasks.errors import BadInput


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("remote", help="manage remotes (add, remove, list)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a remote: an http(s) registry URL or a directory")
    add.add_argument("name", help="a short name, such as origin")
    add.add_argument("url", help="http(s)://host/api/ of a registry, or a directory")
    add.add_argument("--token-file", help="file holding the remote registry's token (mode 0600)")
    add.set_defaults(func=handle_add)
    rm = sub.add_parser("remove", help="forget a remote")
    rm.add_argument("name", help="the remote to forget")
    rm.set_defaults(func=handle_remove)
    ls = sub.add_parser("list", help="list remotes")
    ls.add_argument(
        "--config",
        default="config.yaml",
        help="also show the remote this config names (default: ./config.yaml)",
    )
    ls.set_defaults(func=handle_list)


def handle_add(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project, checked_token_file, remote_url

    project = Project.load()
    remotes = project.settings.setdefault("remotes", {})
    if args.name in remotes:
        raise BadInput(f"remote {args.name!r} already exists; remove it first")
    url = remote_url(args.url)
    spec = {"url": url}
    if args.token_file:
        token_file = Path(args.token_file).expanduser().resolve()
        spec["token_file"] = str(checked_token_file(token_file, "--token-file"))
    remotes[args.name] = spec
    project.save_settings()
    print(f"remote {args.name} -> {url}")
    return 0


def handle_remove(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project

    project = Project.load()
    if args.name not in (project.settings.get("remotes") or {}):
        raise BadInput(f"no remote {args.name!r}")
    del project.settings["remotes"][args.name]
    project.save_settings()
    return 0


def handle_list(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project

    remotes = Project.load().remotes
    for name, spec in remotes.items():
        print(f"{name}\t{spec.url}" + (f"\t({spec.variable})" if spec.variable else ""))
    config = Path(args.config)
    if "origin" not in remotes and config.is_file():
        try:
            meta = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("run_metadata")
        except yaml.YAMLError:
            meta = None
        url = (meta or {}).get("remote_data_registry_url") if isinstance(meta, dict) else None
        if url:
            print(f"origin\t{url}\t(run_metadata.remote_data_registry_url in {config})")
    return 0
