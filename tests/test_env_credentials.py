"""A CI job's credentials and identity from the environment: FDP_REMOTE_URL(_<NAME>) and
FDP_REMOTE_TOKEN(_<NAME>) in place of `fdp remote add` and a token file, FDP_USER_NAME,
FDP_USER_ORCID and FDP_NAMESPACE in place of `fdp init`; the token is used, and found in
no output, no file and not in the job's environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import Env, git_commit_all

from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

# writes the names of the FDP_* variables it sees, and whether any value is a remote token
ENV_MODEL = """\
import os
from fdp_tasks.api import Session

tokens = [v for k, v in os.environ.items() if "TOKEN" in k and k != "FDP_LOCAL_TOKEN"]
with Session() as fdp:
    with open(fdp.write("results/seen"), "w") as out:
        out.write(" ".join(sorted(k for k in os.environ if k.startswith("FDP_"))) + "\\n")
        out.write(f"other tokens: {len(tokens)}\\n")
"""

IDENTITY = {"FDP_USER_NAME": "Group CI", "FDP_NAMESPACE": "ci"}


class CiEnv(Env):
    """A project as a CI job sees it: no `fdp init`, and what it needs in `extra`."""

    def __init__(self, base: Path, extra: dict[str, str]):
        super().__init__(base, "ci-project")
        self.extra = dict(extra)

    @property
    def environ(self) -> dict[str, str]:
        env = super().environ
        for key in list(env):
            if key.startswith(("FDP_REMOTE", "FDP_USER", "FDP_NAMESPACE")):
                del env[key]
        return {**env, **self.extra}


def ci_project(base: Path, extra: dict[str, str]) -> CiEnv:
    env = CiEnv(base, {**IDENTITY, **extra})
    env.file("model.py", ENV_MODEL)
    env.config(
        {
            "run_metadata": {"description": "what the job sees", "script": "python3 model.py"},
            "write": [{"data_product": "results/seen", "description": "env", "file_type": "txt"}],
        }
    )
    git_commit_all(env.project)
    return env


def files_holding(needle: str, *tops: Path) -> list[Path]:
    """Every file under `tops` whose bytes hold `needle`."""
    found = []
    for top in tops:
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes():
                found.append(path)
    return found


def pushed(server: Any, namespace: str = "ci") -> list[dict[str, Any]]:
    ns = server.store.find_one("namespace", {"name": namespace})
    return server.store.find("data_product", {"namespace": ns["id"]}) if ns else []


@pytest.fixture
def group(registry_server: Any) -> Any:
    """A group registry on loopback, with a token of the CI's user."""
    server = registry_server()
    server.ci_token = working_token(server.store, "ci-bot")
    return server


def test_a_token_from_the_environment_pushes_and_is_kept_out_of_every_output_and_file(
    tmp_path: Path, group: Any
) -> None:
    token = group.ci_token
    mirror = tmp_path / "mirror"
    env = ci_project(
        tmp_path,
        {
            "FDP_REMOTE_URL": group.api_url,
            "FDP_REMOTE_TOKEN": token,
            "FDP_REMOTE_URL_MIRROR": str(mirror),  # another remote, named by the variable
        },
    )
    outputs = [env.fdp("remote", "list"), env.fdp("run"), env.fdp("push"), env.fdp("status")]
    assert outputs[0].stdout.splitlines() == [
        f"origin\t{group.api_url}\t(FDP_REMOTE_URL)",
        f"mirror\t{mirror}\t(FDP_REMOTE_URL_MIRROR)",
    ]
    assert "1 pushed" in outputs[2].stdout
    [product] = pushed(group)
    assert product["name"] == "results/seen"
    who = group.store.find_one("users", {"username": "ci-bot"})
    assert product["updated_by"] == who["id"]  # written with the CI's token
    for result in outputs:
        assert token not in result.output
    # a directory remote takes no token, and is pushed to by name
    env.fdp("push", "--remote", "mirror")
    assert (mirror / "registry.db").is_file()
    # not in the project (settings, per-config state), the data store, the job's folder
    # and log, nor the local registry
    assert files_holding(token, env.project, env.home, mirror) == []
    assert not (env.project / ".fdp" / "settings.yaml").exists()
    # the script never saw it: no FDP_REMOTE_TOKEN* in the job's environment
    [seen] = (env.data_store / "ci" / "results" / "seen").glob("*.txt")
    names, others = seen.read_text(encoding="utf-8").splitlines()
    assert "FDP_REMOTE_URL" in names.split() and "FDP_REMOTE_TOKEN" not in names
    assert others == "other tokens: 0"


def test_the_remote_s_own_variable_wins_over_the_generic_one(tmp_path: Path, group: Any) -> None:
    wrong = "0" * 40
    env = ci_project(
        tmp_path,
        {
            "FDP_REMOTE_URL": group.api_url,
            "FDP_REMOTE_TOKEN": wrong,
            "FDP_REMOTE_TOKEN_ORIGIN": group.ci_token,
        },
    )
    env.fdp("run")
    assert "1 pushed" in env.fdp("push").stdout
    assert len(pushed(group)) == 1

    # the other way round, the remote's own (wrong) token is the one used: refused
    other = ci_project(
        tmp_path / "other",
        {
            "FDP_REMOTE_URL": group.api_url,
            "FDP_REMOTE_TOKEN": group.ci_token,
            "FDP_REMOTE_TOKEN_ORIGIN": wrong,
            "FDP_NAMESPACE": "ci2",
        },
    )
    other.fdp("run")
    refused = other.fdp("push", check=False)
    assert refused.returncode == 1
    assert "403" in refused.stderr
    assert wrong not in refused.output and group.ci_token not in refused.output
    assert pushed(group, "ci2") == []

    # a remote named with other characters than letters and digits: FDP_REMOTE_TOKEN_<NAME>
    # with them as `_`, and it wins over a token file of the remote too
    named = ci_project(tmp_path / "named", {"FDP_NAMESPACE": "ci3", "FDP_REMOTE_TOKEN": wrong})
    stale = tmp_path / "stale.token"
    stale.write_text(wrong + "\n", encoding="utf-8")
    stale.chmod(0o600)
    named.add_remote(group.api_url, stale, name="group-registry.eu")
    named.fdp("run")
    assert named.fdp("push", "--remote", "group-registry.eu", check=False).returncode == 1
    named.extra["FDP_REMOTE_TOKEN_GROUP_REGISTRY_EU"] = group.ci_token
    assert "1 pushed" in named.fdp("push", "--remote", "group-registry.eu").stdout


def test_a_missing_secret_stops_the_push_before_anything_is_sent(
    tmp_path: Path, group: Any
) -> None:
    # an undefined CI secret arrives as an empty variable
    env = ci_project(tmp_path, {"FDP_REMOTE_URL": group.api_url, "FDP_REMOTE_TOKEN": ""})
    env.fdp("run")
    before = group.store.count("object")
    refused = env.fdp("push", check=False)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("fdp: error: ") and "FDP_REMOTE_TOKEN_ORIGIN" in line
    assert group.store.count("object") == before and pushed(group) == []
    # a token with a space in it is bad input, named without its value
    env.extra["FDP_REMOTE_TOKEN"] = "two words"
    bad = env.fdp("push", check=False)
    assert bad.returncode == 2 and "FDP_REMOTE_TOKEN:" in bad.stderr
    assert "two words" not in bad.output
    # a URL from the environment that names no remote
    env.extra.update(FDP_REMOTE_TOKEN=group.ci_token, FDP_REMOTE_URL="ftp://example.org/")
    wrong_url = env.fdp("push", check=False)
    assert wrong_url.returncode == 2 and "FDP_REMOTE_URL: " in wrong_url.stderr


def test_identity_from_the_environment_needs_no_init(tmp_path: Path) -> None:
    env = ci_project(tmp_path, {"FDP_USER_ORCID": "0000-0002-1825-0097"})
    ran = env.fdp("run")
    assert "job" in ran.executed
    [listed] = json.loads(env.fdp("list", "--json").stdout)
    assert listed["namespace"] == "ci"  # FDP_NAMESPACE: where outputs go
    store = Store(env.home / "registry.db")
    try:
        [run] = store.find("code_run")
        authors = {a["name"]: a["identifier"] for a in store.find("author")}
    finally:
        store.close()
    assert authors["Group CI"] == "https://orcid.org/0000-0002-1825-0097"
    # nothing of `fdp init`'s was written
    assert not (env.project / ".fdp" / "settings.yaml").exists()
    assert not (env.home / "user.yaml").exists()
    assert run["description"] == "what the job sees"

    env.extra["FDP_USER_ORCID"] = "Ada"
    bad = env.fdp("run", "--force", check=False)
    assert bad.returncode == 2
    [line] = bad.stderr.splitlines()
    assert line.startswith("fdp: error: FDP_USER_ORCID: expected an ORCID")


def test_the_environment_wins_over_the_settings_of_fdp_init(tmp_path: Path) -> None:
    env = ci_project(tmp_path, {})
    env.fdp("init", "--name", "Ada Lovelace", "--namespace", "ada")
    env.extra.update(FDP_USER_NAME="Group CI", FDP_NAMESPACE="ci")
    env.fdp("run")
    [listed] = json.loads(env.fdp("list", "--json").stdout)
    assert listed["namespace"] == "ci"
