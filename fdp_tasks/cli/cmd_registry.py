"""`fdp registry serve|start|stop|status|token`: the local registry as an HTTP server.

`fdp run` serves the registry to scripts by itself; these commands are for keeping one
running (for other tools, or several runs) and for the token other clients need.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fdp_tasks.project import Project

NOT_RUNNING = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fdp registry` and its actions."""
    parser = subparsers.add_parser(
        "registry",
        help="serve the local registry over HTTP",
        description="Run the local registry as a REST server compatible with the FAIR Data "
        "Pipeline registry API (and data-pipeline-api scripts).",
    )
    actions = parser.add_subparsers(dest="registry_action", metavar="ACTION", required=True)

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on (default 127.0.0.1; anything else exposes "
            "the registry to the network)",
        )
        p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
        p.add_argument("--db", default=None, help="database URL (default: the project's)")
        p.add_argument(
            "--blobs",
            type=Path,
            default=None,
            help="directory for uploaded files (default: <server dir>/blobs)",
        )
        p.add_argument(
            "--public-url",
            default=None,
            help="base URL put into links, when clients reach it through a proxy",
        )

    serve = actions.add_parser("serve", help="run the server in the foreground")
    server_options(serve)
    serve.set_defaults(func=do_serve)
    start = actions.add_parser("start", help="start the server in the background")
    server_options(start)
    start.set_defaults(func=do_start)
    stop = actions.add_parser("stop", help="stop the server started with `start`")
    stop.add_argument("--db", help="the database of the server to stop (default: the local one)")
    stop.set_defaults(func=do_stop)
    status = actions.add_parser("status", help="show whether the background server runs")
    status.add_argument("--db", help="the database of the server (default: the local one)")
    status.set_defaults(func=do_status)
    token = actions.add_parser(
        "token",
        help="print the path of a token file (the local registry's, or a user's of --db)",
        description="Without --db: the local registry's token file. With --db: a token for "
        "--user on that registry (created with the user if needed), kept in a 0600 file, "
        "for handing to that user.",
    )
    token.add_argument("--show", action="store_true", help="print the token itself")
    token.add_argument("--db", help="a registry database (file or URL) other than the local one")
    token.add_argument("--user", default="admin", help="with --db: whose token (default admin)")
    token.add_argument("--file", type=Path, help="with --db: the token file to use or create")
    token.set_defaults(func=do_token)


def _project() -> Project:
    # Imported here so `fdp --help` stays fast.
    from fdp_tasks.project import Project

    return Project.load()


def _locations(args: argparse.Namespace) -> tuple[str, Path]:
    """Database URL and blob directory: from the options, else from the project."""
    if args.db:
        return args.db, args.blobs or _state_dir(args) / "blobs"
    project = _project()
    project.local_token()  # the admin user and its token exist before anyone connects
    return project.registry_db, args.blobs or project.server_dir / "blobs"


def _state_dir(args: argparse.Namespace) -> Path:
    """The server directory of --db if given, else the local registry's."""
    from fdp_tasks.project import server_dir_for

    db = getattr(args, "db", None)
    if db:
        return server_dir_for(db, _project().home)
    return _project().server_dir


def do_serve(args: argparse.Namespace) -> int:
    """Serve in the foreground until Ctrl-C or SIGTERM."""
    from fdp_tasks.server import serve

    db, blobs = _locations(args)
    serve.serve_forever(
        db,
        blobs,
        args.host,
        args.port,
        public_url=args.public_url,
        on_ready=lambda url: print(f"registry serving on {url}/api/ (Ctrl-C to stop)", flush=True),
    )
    return 0


def do_start(args: argparse.Namespace) -> int:
    """Start in the background; print the URL once the server answers."""
    from fdp_tasks.server import serve

    db, blobs = _locations(args)
    state_dir = _state_dir(args)
    running = serve.background_status(state_dir)
    if running:
        print(f"{running['url']}/api/ (already running, pid {running['pid']})")
        return 0
    url = serve.start_background(
        db, blobs, state_dir, host=args.host, port=args.port, public_url=args.public_url
    )
    print(f"{url}/api/")
    return 0


def do_stop(args: argparse.Namespace) -> int:
    """Stop the background server recorded for this project (never anything else)."""
    from fdp_tasks.server import serve

    if serve.stop_background(_state_dir(args)):
        print("registry stopped")
        return 0
    print("registry not running")
    return 0


def do_status(args: argparse.Namespace) -> int:
    """Exit 0 and print url and pid when running; exit 3 when not."""
    from fdp_tasks.server import serve

    info = serve.background_status(_state_dir(args))
    if info is None:
        print("registry not running")
        return NOT_RUNNING
    print(f"{info['url']}/api/ (pid {info['pid']}, database {info.get('db', '?')})")
    return 0


def do_token(args: argparse.Namespace) -> int:
    """Print where the token is (creating it if needed); with --show, only the token itself,
    so that `$(fdp registry token --show)` fits in a header."""
    if not args.db:
        project = _project()
        token = project.local_token()
        print(token if args.show else project.token_path)
        return 0
    from fdp_tasks.project import user_token

    token, path = user_token(args.db, args.user, args.file)
    print(token if args.show else path)
    return 0
