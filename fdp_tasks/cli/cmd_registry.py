"""`fdp registry serve|start|stop|status|token`: the local registry as an HTTP server.

`fdp run` serves the registry to scripts by itself; these commands are for keeping one
running (for other tools, or several runs) and for the token other clients need.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
            default=None,
            metavar="DIR|s3://BUCKET/PREFIX",
            help="where uploaded files go: a directory (default: <server dir>/blobs), or an "
            "S3 bucket and prefix, whose presigned URLs then carry the bytes (credentials "
            "and endpoint from the standard AWS_* environment variables)",
        )
        p.add_argument(
            "--public-url",
            default=None,
            help="base URL put into links, when clients reach it through a proxy",
        )
        p.add_argument(
            "--trusted-proxies",
            type=int,
            default=0,
            metavar="N",
            help="the server sits behind N reverse proxies (1 for an nginx with HTTPS): "
            "take scheme, host and client address from their X-Forwarded-* headers, so every "
            "URL handed out is the public https:// one (default 0: such headers are ignored)",
        )
        p.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="worker processes sharing the port (default 1; POSIX only; with several, "
            "PostgreSQL is the database to use, SQLite's writers take turns)",
        )
        p.add_argument(
            "--threads", type=int, default=8, metavar="N", help="threads per process (default 8)"
        )
        p.add_argument(
            "--connections",
            type=int,
            default=None,
            metavar="N",
            help="open connections per process at most; more wait to be accepted (default "
            "100, as waitress; a cluster's jobs each hold a few)",
        )
        p.add_argument(
            "--max-body-size",
            default="4M",
            metavar="SIZE",
            help="largest request body for the API, e.g. 4M or 512K (default 4M); uploads "
            "through a signed upload URL may be larger",
        )
        p.add_argument(
            "--access-log",
            default="-",
            metavar="FILE",
            help="append a common-log-format line per request to FILE (default -: stderr; "
            "for `start`, the server's log)",
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
        help="print the path of a token file (the local registry's, or a user's of --db); "
        "list, revoke and rotate tokens",
        description="Without --db: the local registry's token file. With --db: a token for "
        "--user on that registry (created with the user if needed), kept in a 0600 file, "
        "for handing to that user. --list, --revoke and --rotate act on the tokens of --db, "
        "else of the local registry. A user name is letters, digits and . _ - @ + (at most "
        "150, not starting with . or -): it names the user's token file.",
    )
    token.add_argument("--show", action="store_true", help="print the token itself")
    token.add_argument("--db", help="a registry database (file or URL) other than the local one")
    token.add_argument("--user", default="admin", help="with --db: whose token (default admin)")
    token.add_argument(
        "--file",
        type=Path,
        help="the token file to use, create, replace (--rotate) or remove (--revoke); "
        "default <user>.token beside a SQLite database",
    )
    what = token.add_mutually_exclusive_group()
    what.add_argument(
        "--list",
        action="store_true",
        help="list every token's user and the days it was made and last used (never a token)",
    )
    what.add_argument("--revoke", metavar="USER", help="make every token of USER unusable, now")
    what.add_argument(
        "--rotate",
        metavar="USER",
        help="give USER a new token in a 0600 file; their older tokens stop working",
    )
    token.set_defaults(func=do_token)
    members = actions.add_parser(
        "members",
        help="list, add or remove the users who may write in a namespace",
        description="Only members of a namespace (its creator, and whom admin or a member "
        "adds) create data products, new versions and external objects in it. Lists the "
        "members, after --add or --remove. Members add others over HTTP too: POST "
        '{"username": ...} to /api/namespace/<id>/members/.',
    )
    members.add_argument("namespace", metavar="NAMESPACE")
    change = members.add_mutually_exclusive_group()
    change.add_argument("--add", metavar="USER", help="let USER write in the namespace")
    change.add_argument("--remove", metavar="USER", help="take USER's right to write away")
    members.add_argument("--db", help="the registry database (default: the local one)")
    members.set_defaults(func=do_members)
    sweep = actions.add_parser(
        "sweep",
        help="remove what unfinished pushes left: records no data product needs, and files",
        description="A push that loses a race is swept at once by the server; one whose "
        "client vanished leaves code runs, objects, storage locations and uploaded files "
        "that no data product needs. This removes those older than --older-than (so that "
        "pushes still under way are left alone), e.g. from cron.",
    )
    sweep.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="only what is older than AGE: 90s, 30m, 12h, 2d, 1w",
    )
    sweep.add_argument("--db", help="the registry database (default: the local one)")
    sweep.add_argument(
        "--blobs",
        type=Path,
        default=None,
        help="the server's directory of uploaded files (default: <server dir>/blobs)",
    )
    sweep.set_defaults(func=do_sweep)
    migrate = actions.add_parser(
        "migrate",
        help="copy a registry, with its ids, uuids, users, tokens and files, to a new database",
        description="Move a registry to another database (e.g. from its SQLite file to "
        "PostgreSQL: --to postgresql+psycopg://user@host/db): every record keeps its id and "
        "uuid, so served under the same address the new database answers every URL the old "
        "one gave out. The target must be empty; the records go over in one transaction. "
        "With --blobs-from and --blobs-to, the server's files go too (folders or s3:// URLs), "
        "each checked against its SHA-1.",
    )
    migrate.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="the registry to copy"
    )
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="URL", help="an empty database"
    )
    migrate.add_argument("--blobs-from", metavar="DIR", help="the server's files, to copy")
    migrate.add_argument("--blobs-to", metavar="DIR", help="where the new server keeps files")
    migrate.set_defaults(func=do_migrate)


def _project() -> Project:
    # Imported here so `fdp --help` stays fast.
    from fdp_tasks.project import Project

    return Project.load()


def _locations(args: argparse.Namespace) -> tuple[str, Path | str]:
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
        threads=args.threads,
        on_ready=lambda url: print(f"registry serving on {url}/api/ (Ctrl-C to stop)", flush=True),
        **_settings(args),
    )
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The server settings every way of serving takes, from the command line."""
    from fdp_tasks.errors import BadInput
    from fdp_tasks.server.limits import parse_size

    if args.trusted_proxies < 0:
        raise BadInput(f"--trusted-proxies: expected 0 or more, got {args.trusted_proxies}")
    if args.threads < 1:
        raise BadInput(f"--threads: expected 1 or more, got {args.threads}")
    if args.connections is not None and args.connections < 1:
        raise BadInput(f"--connections: expected 1 or more, got {args.connections}")

    return {
        "trusted_proxies": args.trusted_proxies,
        "max_body": parse_size(args.max_body_size),
        "access_log": args.access_log,
        "workers": args.workers,
        **({} if args.connections is None else {"connections": args.connections}),
    }


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
        db,
        blobs,
        state_dir,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        threads=args.threads,
        **_settings(args),
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
    if args.list or args.revoke or args.rotate:
        return _manage_tokens(args)
    if not args.db:
        project = _project()
        token = project.local_token()
        print(token if args.show else project.token_path)
        return 0
    from fdp_tasks.project import user_token

    token, path = user_token(args.db, args.user, args.file)
    print(token if args.show else path)
    return 0


def do_members(args: argparse.Namespace) -> int:
    """Print the namespace's members, one per line, after the change asked for."""
    from fdp_tasks.server.admin import namespace_members

    db = args.db or _project().registry_db
    for name in namespace_members(db, args.namespace, add=args.add, remove=args.remove):
        print(name)
    return 0


def do_sweep(args: argparse.Namespace) -> int:
    """Sweep the registry and say what went."""
    from fdp_tasks.server.admin import parse_age, sweep_leftovers

    age = parse_age(args.older_than)
    db, blobs = _locations(args)
    swept = sweep_leftovers(db, blobs, age)
    gone = ", ".join(f"{n} {t}" for t, n in swept.records.items() if n) or "no records"
    parts = f", {swept.unfinished_uploads} unfinished upload(s)" if swept.unfinished_uploads else ""
    print(f"swept {gone}{parts} and {len(swept.hashes)} file(s) older than {args.older_than}")
    return 0


def do_migrate(args: argparse.Namespace) -> int:
    """Copy the registry and its files; one line says what moved."""
    from fdp_tasks.server.migrate import migrate_registry

    done = migrate_registry(args.source, args.target, args.blobs_from, args.blobs_to)
    print(done.summary())
    return 0


def _manage_tokens(args: argparse.Namespace) -> int:
    """`--list`, `--revoke USER`, `--rotate USER` on --db's registry or the local one."""
    from fdp_tasks import project as projects

    user = args.revoke or args.rotate
    file = args.file
    if args.db:
        db = args.db
    else:
        local = _project()
        db = local.registry_db
        if file is None and user == projects.LOCAL_USER:
            file = local.token_path
    if args.list:
        rows = projects.registry_tokens(db)
        width = max([len("USER"), *(len(r["username"]) for r in rows)])
        print(f"{'USER':<{width}}  CREATED     LAST USED")
        for row in rows:
            print(f"{row['username']:<{width}}  {row['created']:<10}  {row['last_used']}")
        return 0
    if args.revoke:
        count, removed = projects.revoke_user_tokens(db, args.revoke, file)
        gone = f"; removed {removed}" if removed is not None else ""
        print(f"revoked {count} token(s) of {args.revoke}{gone}")
        return 0
    path = projects.rotate_user_token(db, args.rotate, file)
    print(path)
    return 0
