"""The reference CLI (fair-cli 0.11.0) against our registry server.

After a 409 the reference CLI looks the existing record up with those of the posted fields
that the type's OPTIONS answer lists in `filter_fields`; a server without them makes it take
the newest record of the type, and link the wrong rows. Its own look-up functions run here in
a virtualenv of their own, against our server and against the upstream emulation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import shared_once

FAIR_CLI = "fair-cli==0.11.0"
NETWORK_TROUBLE = (
    "Could not find a version",
    "No matching distribution",
    "Max retries exceeded",
    "ConnectionError",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)

# Run by the fair-cli venv's Python: post A, post B, then post A again as the reference's
# sync does (fair.registry.sync._get_new_url): filters are the posted fields that
# get_filter_variables lists, minus URLs of the registry. Prints {type: [first, again]}.
LOOKUPS = r"""
import json, os, sys
from fair.registry.requests import get_filter_variables, post_else_get

uri, token = sys.argv[1], os.environ["FDP_TEST_TOKEN"]


def filters(obj_path, data):
    names = get_filter_variables(uri, obj_path, token)
    return {
        k: v for k, v in data.items()
        if k in names and isinstance(v, str) and not v.startswith(uri.split("/api/")[0])
    }


def twice(obj_path, first, other):
    url = post_else_get(uri, obj_path, token, dict(first))
    post_else_get(uri, obj_path, token, dict(other))
    again = post_else_get(uri, obj_path, token, dict(first), params=filters(obj_path, first))
    return [url, again]


out = {}
out["namespace"] = twice(
    "namespace", {"name": "alpha", "full_name": "Alpha lab"}, {"name": "beta", "full_name": "Beta"}
)
out["storage_root"] = twice(
    "storage_root", {"root": "https://a.example.org/files/"}, {"root": "https://b.example.org/"}
)
root = out["storage_root"][0]
out["storage_location"] = twice(
    "storage_location",
    {"path": "a/one.csv", "hash": "1" * 40, "public": True, "storage_root": root},
    {"path": "b/two.csv", "hash": "2" * 40, "public": True, "storage_root": root},
)
print(json.dumps(out))
"""


# Installing fair-cli from PyPI takes a while (and pip may wait up to PIP_INSTALL_TIMEOUT),
# and a test that needs it may wait for another worker's install: longer than the default.
PIP_INSTALL_TIMEOUT = 900
NEEDS_FAIR_CLI = pytest.mark.timeout(PIP_INSTALL_TIMEOUT + 300)


def install_fair_cli(folder: Path) -> dict[str, Any]:
    """A virtualenv in `folder` with fair-cli installed: {"python": its Python}, or
    {"problem": why not, "offline": whether PyPI could not be reached}."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", FAIR_CLI],
        capture_output=True,
        text=True,
        timeout=PIP_INSTALL_TIMEOUT,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        offline = any(sign in proc.stderr for sign in NETWORK_TROUBLE)
        return {"problem": f"pip could not install {FAIR_CLI}: {tail}", "offline": offline}
    return {"python": str(python)}


@pytest.fixture(scope="session")
def fair_cli_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a virtualenv with fair-cli 0.11.0 installed from PyPI, once per session
    however many test workers ask (see support.shared_once).

    Outside CI (env var CI unset), a machine that cannot reach PyPI skips these tests with the
    reason printed; in CI that is a failure.
    """
    made = shared_once(tmp_path_factory.getbasetemp(), "fair-cli", install_fair_cli)
    if "python" in made:
        return Path(made["python"])
    reason = made["problem"]
    if made["offline"] and not os.environ.get("CI"):
        print(reason)
        pytest.skip(reason)
    pytest.fail(reason)


def run_lookups(python: Path, api_url: str, token: str, home: Path) -> dict[str, list[str]]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FDP_TEST_TOKEN": token, "HOME": str(home)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), "-c", LOOKUPS, api_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert token not in proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@NEEDS_FAIR_CLI
def test_reference_lookups_find_the_clashing_record_on_our_server(
    tmp_path: Path, fair_cli_python: Path, registry_server: Callable[..., Any]
) -> None:
    server = registry_server()
    found = run_lookups(fair_cli_python, server.api_url, server.token, tmp_path / "home")
    for type_name, (first, again) in found.items():
        assert again == first, f"{type_name}: the reference CLI took {again}, not {first}"


@NEEDS_FAIR_CLI
def test_reference_lookups_on_the_upstream_emulation(
    tmp_path: Path, fair_cli_python: Path, upstream_registry: Callable[..., Any]
) -> None:
    upstream = upstream_registry(object_storage=False)
    found = run_lookups(fair_cli_python, upstream.api_url, upstream.token, tmp_path / "home")
    for type_name, (first, again) in found.items():
        assert again == first, f"{type_name}: the reference CLI took {again}, not {first}"
