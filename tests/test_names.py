"""Canonical names wherever a name enters: `fdp validate`, the script API and the registry
server. Two spellings of one name (`a//b`, `a/./b`, `a/b/`) would alias one data-store file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from support import Env

from fdp_tasks.store.sql import Store

META = "run_metadata:\n  description: test\n  default_output_namespace: ns\n  script: echo hi\n"
ALIASES = ["a/./b", "a//b", "a/b/", "/a/b", "a/../b", "a/[b]", "a/b?", "a\\b"]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def validate(env: Env, text: str) -> tuple[int, list[str]]:
    env.file("config.yaml", text)
    result = env.fdp("validate", "config.yaml", check=False)
    return result.returncode, result.stderr.splitlines()


# -- fdp validate -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALIASES)
@pytest.mark.parametrize(
    "section,template,path",
    [
        ("read", "read:\n  - data_product: '{}'\n", "read[0].data_product"),
        ("write", "write:\n  - data_product: '{}'\n    file_type: csv\n", "write[0].data_product"),
        (
            "alias",
            "read:\n  - data_product: x\n    use:\n      data_product: '{}'\n",
            "read[0].use.data_product",
        ),
        (
            "register",
            "register:\n  - data_product: '{}'\n    root: data\n    path: a.csv\n",
            "register[0].data_product",
        ),
    ],
)
def test_non_canonical_product_names_are_refused(
    env: Env, name: str, section: str, template: str, path: str
) -> None:
    rc, err = validate(env, META + template.format(name))
    assert rc == 2
    assert len(err) == 1
    assert err[0].startswith(f"config.yaml: {path}: {name!r} ")


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "read:\n  - data_product: a\n    use:\n      namespace: a/b\n",
            "config.yaml: read[0].use.namespace: namespace 'a/b' holds '/', '\\' or NUL; a "
            "namespace is one folder name",
        ),
        (
            "register:\n  - namespace: 'PSU*'\n",
            "config.yaml: register[0].namespace: namespace 'PSU*' holds '*', '[', ']' or '?'",
        ),
        (
            "register:\n  - external_object: 'tables/*'\n    root: data\n    path: a.csv\n"
            "    identifier: https://doi.org/10.1/x\n",
            "config.yaml: register[0].external_object: 'tables/*' holds '*', which only a "
            "config's read or write pattern may hold",
        ),
        (
            "write:\n  - data_product: 'out//${{DATE}}'\n    file_type: csv\n",
            "config.yaml: write[0].data_product: 'out//${{DATE}}' has an empty segment ('//'); "
            "use one '/'",
        ),
    ],
    ids=["namespace-slash", "namespace-glob", "register-glob", "templated"],
)
def test_namespaces_and_register_names_are_checked(env: Env, text: str, expected: str) -> None:
    assert validate(env, META + text) == (2, [expected])


@pytest.mark.parametrize(
    "text",
    [
        "write:\n  - data_product: results/*\n    file_type: csv\n",
        "write:\n  - data_product: results/*/summary\n    file_type: csv\n",
        "read:\n  - data_product: inputs/*\n",
        "write:\n  - data_product: out/${{DATE}}/x\n    file_type: csv\n",
    ],
    ids=["write-glob", "write-glob-segment", "read-glob", "templated"],
)
def test_patterns_and_templated_names_validate(env: Env, text: str) -> None:
    assert validate(env, META + text) == (0, [])


# -- the registry server ----------------------------------------------------------------------


@pytest.fixture
def reg(registry_server):
    return registry_server()


def post(reg, type_name: str, data: dict) -> requests.Response:
    return requests.post(f"{reg.api_url}{type_name}/", json=data, headers=reg.headers())


@pytest.mark.parametrize("name", ["a//b", "a/./b", "a/b/", "/a", "a/../b", "a*", "a?", "a[0]"])
def test_server_refuses_non_canonical_product_names(reg, name: str) -> None:
    ns = post(reg, "namespace", {"name": "ns"}).json()
    obj = post(reg, "object", {}).json()
    resp = post(
        reg,
        "data_product",
        {"name": name, "version": "1.0.0", "namespace": ns["url"], "object": obj["url"]},
    )
    assert resp.status_code == 400
    (message,) = resp.json()["name"]
    assert message.startswith(repr(name))
    listing = requests.get(f"{reg.api_url}data_product/", headers=reg.headers()).json()
    assert listing["count"] == 0


@pytest.mark.parametrize("name", ["a/b", "a*", ".."])
def test_server_refuses_non_canonical_namespaces(reg, name: str) -> None:
    resp = post(reg, "namespace", {"name": name})
    assert resp.status_code == 400
    (message,) = resp.json()["name"]
    assert message.startswith(f"namespace {name!r}")


def test_server_refuses_renaming_a_product_to_an_alias(reg) -> None:
    ns = post(reg, "namespace", {"name": "ns"}).json()
    obj = post(reg, "object", {}).json()
    data = {"name": "a/b", "version": "1.0.0", "namespace": ns["url"], "object": obj["url"]}
    created = post(reg, "data_product", data)
    assert created.status_code == 201
    url = created.json()["url"]
    resp = requests.patch(url, json={"name": "a//b"}, headers=reg.headers())
    assert resp.status_code == 400
    assert requests.get(url, headers=reg.headers()).json()["name"] == "a/b"


# -- the script API ---------------------------------------------------------------------------

SCRIPT = '''\
"""Writes through a pattern item, and records what the API refuses."""
from pathlib import Path

from fdp_tasks.api import Session
from fdp_tasks.errors import FdpError

with Session() as fdp:
    refused = []
    for call, name in [
        (fdp.write, "results/a/b"),
        (fdp.write, "other"),
        (fdp.write, "results//x"),
        (fdp.write, "results/*"),
        (fdp.read, "inputs/./a"),
    ]:
        try:
            call(name)
        except FdpError as exc:
            refused.append(str(exc))
    Path("refused.json").write_text(__import__("json").dumps(refused))
    for name in ("summary", "results/a", "results/b"):
        Path(fdp.write(name)).write_text(name + "\\n")
'''


def glob_config() -> dict:
    return {
        "run_metadata": {
            "description": "outputs under a pattern",
            "default_output_namespace": "test",
            "shell": "python",
            "script_path": "model.py",
        },
        "write": [
            {"data_product": "summary", "description": "summary", "file_type": "csv"},
            {
                "data_product": "results/*",
                "description": "per-run results",
                "file_type": "txt",
                "public": False,
            },
        ],
    }


def test_script_writes_new_names_under_a_pattern_item(env: Env) -> None:
    env.file("model.py", SCRIPT)
    env.config(glob_config())
    env.fdp("run")
    refused = json.loads((env.project / "refused.json").read_text())
    assert len(refused) == 5
    assert refused[0].endswith(
        "config.yaml: no write item for 'results/a/b' (known: summary; patterns: results/*)"
    )
    assert refused[1].endswith(
        "config.yaml: no write item for 'other' (known: summary; patterns: results/*)"
    )
    assert (
        refused[2]
        == "Session.write('results//x'): 'results//x' has an empty segment ('//'); use one '/'"
    )
    assert refused[3] == (
        "Session.write('results/*'): 'results/*' holds '*', which only a config's read or "
        "write pattern may hold"
    )
    assert refused[4] == (
        "Session.read('inputs/./a'): 'inputs/./a' has a '.' segment; names cannot hold '.' or "
        "'..' segments"
    )

    products = env.fdp("list", "products").stdout.split()
    assert sorted(products) == [
        "test:results/a@0.0.1",
        "test:results/b@0.0.1",
        "test:summary@0.0.1",
    ]
    assert (env.data_store / "test/results/a/0.0.1.txt").read_text() == "results/a\n"
    info = json.loads(env.fdp("info", "--json", "test:results/b@0.0.1").stdout)
    assert info["description"] == "per-run results"

    store = Store(env.home / "registry.db")
    try:
        ns = store.find_one("namespace", {"name": "test"})
        for name, public in [("results/a", False), ("results/b", False), ("summary", True)]:
            product = store.find_one("data_product", {"namespace": ns["id"], "name": name})
            obj = store.get("object", product["object"])
            location = store.get("storage_location", obj["storage_location"])
            assert location["public"] is public, name
    finally:
        store.close()
