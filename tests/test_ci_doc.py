"""docs/ci.md as CI runs it: the GitHub Actions workflow and the GitLab CI job are read out
of the document and their shell steps run as written, on a clean project made of the
document's own config and model, against a registry server on loopback. Only the install
URL (for a copy of this checkout) and `${{ secrets.X }}` / `${{ env.X }}` are substituted;
any other expression in what runs fails the test, so the document cannot go stale.

Also here: a warm cache restored into a fresh clone runs only the config that changed, and
the `--json` output of `fdp list` and `fdp verify`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO, Env, git, git_commit_all, source_copy

from fdp_tasks.store.tokens import working_token

DOC = REPO / "docs" / "ci.md"
INSTALL_URL = re.compile(r"fdp-tasks @ git\+https://[^\s\"']+")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
KNOWN_ACTIONS = ("actions/checkout@", "actions/setup-python@", "actions/cache@")
NETWORK_HINTS = (  # pip could not reach the package index to fetch setuptools for the build
    "Could not find a version",
    "No matching distribution",
    "Max retries exceeded",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)
INPUT = "date,cases\n2026-11-01,3\n2026-11-02,5\n2026-11-03,4\n"


# ------------------------------------------------------------------------ the document
def doc_blocks() -> dict[str, str]:
    """The fenced blocks of docs/ci.md that name a file in their first line (`# path`)."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for body in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        first = body.splitlines()[0] if body.strip() else ""
        if re.fullmatch(r"# [\w./-]+\.\w+", first):
            out[first[2:]] = body
    return out


def substitute(text: str, secrets: dict[str, str], env: dict[str, str], where: str) -> str:
    """`${{ secrets.X }}` and `${{ env.X }}` replaced as GitHub does; any other expression
    fails the test."""

    def one(match: re.Match[str]) -> str:
        kind, _, name = match.group(1).partition(".")
        if kind == "secrets" and re.fullmatch(r"\w+", name):
            return secrets.get(name, "")  # an undefined secret is an empty string
        if kind == "env" and re.fullmatch(r"\w+", name):
            return env.get(name, "")
        raise AssertionError(f"{where}: an expression the test does not substitute: {match[0]}")

    return EXPRESSION.sub(one, text)


# ----------------------------------------------------------------------- the machinery
@dataclass
class Runner:
    """A CI runner in miniature: a workspace cloned from the project's origin, a Python
    with fdp-tasks installable from a copy of this checkout, a home of its own, and a cache
    folder that survives between jobs."""

    base: Path
    origin: Path
    source: Path
    python_bin: Path
    cache: Path
    workspace: Path
    home: Path
    outputs: list[str] = field(default_factory=list)

    def clean_env(self) -> dict[str, str]:
        """What a fresh runner's shell has: no FDP_* and no PYTHONPATH of this test run."""
        keep = ("LANG", "LC_ALL", "TMPDIR", "http_proxy", "https_proxy", "no_proxy")
        env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
        env.update(
            HOME=str(self.home),
            PATH=os.pathsep.join([str(self.python_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
            CI="true",
            FDP_PROGRESS="never",
        )
        return env

    def checkout(self, depth_all: bool = True) -> None:
        if self.workspace.exists():
            shutil.rmtree(self.workspace)
        subprocess.run(
            ["git", "clone", "-q", str(self.origin), str(self.workspace)],
            check=True,
            capture_output=True,
        )
        # `fdp reproduce` checks out recorded commits: a shallow clone may not hold them
        assert depth_all, "the document asks for a full clone (fetch-depth: 0, GIT_DEPTH: 0)"

    def restore(self, paths: list[str]) -> None:
        for rel in paths:
            saved = self.cache / rel
            if saved.exists():
                shutil.copytree(saved, self.workspace / rel, dirs_exist_ok=True)

    def save(self, paths: list[str]) -> None:
        for rel in paths:
            if (self.workspace / rel).exists():
                shutil.rmtree(self.cache / rel, ignore_errors=True)
                shutil.copytree(self.workspace / rel, self.cache / rel)

    def shell(self, script: str, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.workspace,
            env={**env, "PWD": str(self.workspace)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        self.outputs += [proc.stdout, proc.stderr]
        if proc.returncode != 0:
            network = any(hint in proc.stderr for hint in NETWORK_HINTS)
            if network and "pip install" in script and not os.environ.get("CI"):
                pytest.skip(f"no package index to build fdp-tasks with: {proc.stderr[-300:]}")
            raise AssertionError(
                f"{what} exited {proc.returncode}\n--- script\n{script}\n--- stdout\n"
                f"{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def install_url(self, text: str) -> str:
        return INSTALL_URL.sub(f"fdp-tasks @ file://{self.source}", text)


def github_job(runner: Runner, workflow: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """Run the workflow's one job as GitHub would; the stdout of each `run:` step."""
    [(name, job)] = workflow["jobs"].items()
    env = runner.clean_env()
    for scope, mapping in (("env", workflow.get("env")), (f"jobs.{name}.env", job.get("env"))):
        for key, value in (mapping or {}).items():
            env[key] = substitute(str(value), secrets, env, f"{scope}.{key}")
    cached: list[str] = []
    stdout = []
    for i, step in enumerate(job["steps"]):
        where = f"jobs.{name}.steps[{i}]"
        if "uses" in step:
            action = str(step["uses"])
            assert action.startswith(KNOWN_ACTIONS), f"{where}: the test cannot run {action}"
            options = step.get("with") or {}
            if action.startswith("actions/checkout@"):
                runner.checkout(depth_all=str(options.get("fetch-depth")) == "0")
            elif action.startswith("actions/cache@"):
                cached = str(options["path"]).split()
                runner.restore(cached)
            continue  # actions/setup-python: the runner's Python is on PATH already
        step_env = dict(env)
        for key, value in (step.get("env") or {}).items():
            step_env[key] = substitute(str(value), secrets, env, f"{where}.env.{key}")
        script = runner.install_url(substitute(step["run"], secrets, step_env, f"{where}.run"))
        if "fdp reproduce" in script and not reproduce_is_there(runner):
            continue  # until `fdp reproduce` is part of fdp-tasks: the one step skipped
        stdout.append(runner.shell(script, step_env, f"{where} ({step.get('name')})").stdout)
    runner.save(cached)  # the cache action's post step
    return stdout


def gitlab_job(runner: Runner, job: dict[str, Any], variables: dict[str, str]) -> str:
    """Run a GitLab job's `script:` lines in one shell, as a runner does; its stdout."""
    env = runner.clean_env()
    env.update(variables, CI_PROJECT_DIR=str(runner.workspace), CI_DEFAULT_BRANCH="main")
    for key, value in (job.get("variables") or {}).items():  # $NAME of earlier ones expanded
        env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), str(value))
    runner.checkout(depth_all=env.get("GIT_DEPTH") == "0")
    paths = [str(p).rstrip("/") for p in job["cache"]["paths"]]
    runner.restore(paths)
    lines = [runner.install_url(str(line)) for line in job["script"]]
    assert "pip install" in lines[0], "the job installs fdp-tasks first"
    runner.shell(lines[0], env, "the install line")
    if not reproduce_is_there(runner):  # until `fdp reproduce` is part of fdp-tasks
        lines = [line for line in lines if "fdp reproduce" not in line]
    script = "\n".join(lines[1:])
    assert EXPRESSION.search(script) is None, "GitLab has no ${{ }} expressions"
    out = runner.shell(script, env, "the GitLab job").stdout
    runner.save(paths)
    return out


# ------------------------------------------------------------------------------ setup
def fdp_python(base: Path) -> Path:
    """A fresh virtual environment holding pip, with this test run's dependencies visible
    (but not fdp-tasks itself, which the document's step installs); its bin folder."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    [site] = (venv / "lib").glob("python*/site-packages")
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "test-dependencies.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    return venv / "bin"


def project_from_doc(base: Path, blocks: dict[str, str]) -> Path:
    """The document's project (its config and model) in a git repository, pushed to a bare
    repository that stands for GitHub or GitLab; returns the bare one."""
    work = base / "project"
    for name in ("analysis/config.yaml", "analysis/model.py"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(blocks[name], encoding="utf-8")
    git_commit_all(work)
    origin = base / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True)
    return origin


def publish_input(base: Path, api_url: str, token_file: Path) -> None:
    """surveillance:cases/daily@0.0.1 on the server, as another member of the group made it."""
    env = Env(base, "surveillance")
    env.file("raw/cases.csv", INPUT)
    env.file(
        "publish.py",
        "from fdp_tasks.api import Session\n"
        "import shutil\n"
        "with Session() as fdp:\n"
        "    shutil.copyfile('raw/cases.csv', fdp.write('cases/daily'))\n",
    )
    env.config(
        {
            "run_metadata": {
                "description": "daily counts",
                "default_output_namespace": "surveillance",
                "script": "python3 publish.py",
            },
            "write": [{"data_product": "cases/daily", "description": "cases", "file_type": "csv"}],
        }
    )
    git_commit_all(env.project)
    env.add_remote(api_url, token_file)
    env.fdp("run")
    env.fdp("push")


@pytest.fixture
def ci_world(tmp_path: Path, registry_server: Callable[..., Any]) -> dict[str, Any]:
    """A group registry on loopback holding the input, a token of the CI's user, the
    document's project at its origin, and a runner to run it on."""
    server = registry_server()
    publish_input(tmp_path, server.api_url, server.token_file)
    token = working_token(server.store, "ci-bot")
    blocks = doc_blocks()
    runner = Runner(
        base=tmp_path,
        origin=project_from_doc(tmp_path, blocks),
        source=source_copy(tmp_path),
        python_bin=fdp_python(tmp_path),
        cache=tmp_path / "ci-cache",
        workspace=tmp_path / "runner" / "work" / "project",
        home=tmp_path / "runner" / "home",
    )
    runner.home.mkdir(parents=True)
    secrets = {"FDP_REMOTE_URL": server.api_url, "FDP_REMOTE_TOKEN": token}
    return {
        "server": server,
        "token": token,
        "blocks": blocks,
        "runner": runner,
        "secrets": secrets,
    }


def assert_token_kept_secret(token: str, runner: Runner) -> None:
    """The token is in no output and in no file the runner has (workspace, cache, home)."""
    for text in runner.outputs:
        assert token not in text
    needle = token.encode()
    for top in (runner.workspace, runner.cache, runner.home):
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), f"the token is in {path}"


def pushed_summary(server: Any) -> list[dict[str, Any]]:
    ns = server.store.find_one("namespace", {"name": "surveillance-ci"})
    assert ns is not None, "nothing was pushed to surveillance-ci"
    return server.store.find("data_product", {"namespace": ns["id"], "name": "results/summary"})


def reproduce_is_there(runner: Runner) -> bool:
    """Whether the installed fdp has `fdp reproduce` (the step is skipped until it has)."""
    fdp = runner.python_bin / "fdp"
    return subprocess.run([str(fdp), "reproduce", "--help"], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------- tests
@pytest.mark.timeout(600)
def test_the_github_workflow_of_docs_ci_runs_as_written(ci_world: dict[str, Any]) -> None:
    runner: Runner = ci_world["runner"]
    workflow = yaml.safe_load(ci_world["blocks"][".github/workflows/fdp.yml"])
    job = next(iter(workflow["jobs"].values()))
    steps = [s for s in job["steps"] if "run" in s]
    assert any("fdp reproduce" in s["run"] for s in steps)
    assert any(str(s.get("uses", "")).startswith("actions/cache@") for s in job["steps"])
    assert workflow["env"]["FDP_HOME"].startswith(".fdp/")  # inside the cached folder

    first = github_job(runner, workflow, ci_world["secrets"])
    ran = "\n".join(first)
    assert ".  job" in ran and "1 pushed" in ran
    assert "reproduced 1/1" in ran or not reproduce_is_there(runner), ran
    [summary] = pushed_summary(ci_world["server"])
    assert summary["version"] == "0.0.1"
    assert not (runner.workspace / ".fdp" / "settings.yaml").exists()  # no fdp init
    assert (runner.cache / ".fdp" / "home" / "registry.db").is_file()

    # the next run of the same commit, from a fresh clone with the cache restored: the pull
    # downloads nothing, the job is up to date, the push has nothing to send
    second = "\n".join(github_job(runner, workflow, ci_world["secrets"]))
    assert "-- job" in second and ".  job" not in second
    assert "1 up to date" in second
    assert len(pushed_summary(ci_world["server"])) == 1
    assert_token_kept_secret(ci_world["token"], runner)


@pytest.mark.timeout(600)
def test_the_gitlab_job_of_docs_ci_runs_as_written(ci_world: dict[str, Any]) -> None:
    runner: Runner = ci_world["runner"]
    [(_, job)] = yaml.safe_load(ci_world["blocks"][".gitlab-ci.yml"]).items()
    assert any("fdp reproduce" in line for line in job["script"])
    fdp_home = job["variables"]["FDP_HOME"]
    assert any(fdp_home.startswith(p.rstrip("/") + "/") for p in job["cache"]["paths"])
    # the project's CI/CD variables, as GitLab puts them in the job's environment
    out = gitlab_job(runner, job, ci_world["secrets"])
    assert ".  job" in out and "1 pushed" in out
    assert "reproduced 1/1" in out or not reproduce_is_there(runner), out
    assert len(pushed_summary(ci_world["server"])) == 1
    assert_token_kept_secret(ci_world["token"], runner)


def test_the_document_asks_only_for_what_the_test_substitutes() -> None:
    blocks = doc_blocks()
    workflow = yaml.safe_load(blocks[".github/workflows/fdp.yml"])
    for step in next(iter(workflow["jobs"].values()))["steps"]:
        if "run" in step:  # what runs may only use secrets and env
            substitute(step["run"], {}, {}, str(step.get("name")))
    for value in workflow["env"].values():
        substitute(str(value), {}, {}, "env")
    text = DOC.read_text(encoding="utf-8")
    assert len(INSTALL_URL.findall(text)) == 2
    # the configs live in files: no `run:` step holds a config of its own
    assert "run_metadata" not in blocks[".github/workflows/fdp.yml"]
    assert "run_metadata" not in blocks[".gitlab-ci.yml"]
    with pytest.raises(AssertionError, match="github.sha"):
        substitute("echo ${{ github.sha }}", {}, {}, "a step")


# ------------------------------------------------------------------- a warm cache, two configs
TWO_CONFIG_MODEL = """\
import sys
from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.write(sys.argv[1]), "w") as out:
        out.write(sys.argv[1] + "\\n")
"""


def two_config_project(base: Path) -> Path:
    """A repository with configs a/config.yaml and b/config.yaml, each a job of its own;
    returns a bare clone of it, its origin."""
    work = base / "two"
    work.mkdir()
    (work / "model.py").write_text(TWO_CONFIG_MODEL, encoding="utf-8")
    for name in ("a", "b"):
        (work / name).mkdir()
        config = {
            "run_metadata": {
                "description": f"config {name}",
                "script": f"python3 ${{{{REPO_DIR}}}}/model.py results/{name}",
            },
            "write": [{"data_product": f"results/{name}", "description": name, "file_type": "txt"}],
        }
        (work / name / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    git_commit_all(work)
    origin = base / "two.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True)
    return origin


def test_a_warm_cache_in_a_fresh_clone_runs_only_the_config_that_changed(tmp_path: Path) -> None:
    origin = two_config_project(tmp_path)
    workspace = tmp_path / "runner" / "project"
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "FDP_HOME": ".fdp/home",  # relative: from the root of the checkout
        "FDP_USER_NAME": "CI",
        "FDP_NAMESPACE": "ci",
        "PYTHONPATH": str(REPO),
    }

    def fdp(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "fdp_tasks.cli.main", *args],
            cwd=workspace,
            env={**env, "PWD": str(workspace)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def fresh_clone() -> None:
        shutil.rmtree(workspace, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(workspace)], check=True)

    fresh_clone()
    for name in ("a", "b"):
        assert ".  job" in fdp("run", f"{name}/config.yaml").stdout
    assert (workspace / ".fdp" / "home" / "registry.db").is_file()
    shutil.copytree(workspace / ".fdp", cache / ".fdp")  # the CI saves its cache

    # someone edits b's config only, and pushes the commit
    editor = tmp_path / "editor"
    subprocess.run(["git", "clone", "-q", str(origin), str(editor)], check=True)
    config_b = editor / "b" / "config.yaml"
    config_b.write_text(
        config_b.read_text(encoding="utf-8").replace("config b", "config b, again"),
        encoding="utf-8",
    )
    git(editor, "commit", "-qam", "b: describe it again")
    git(editor, "push", "-q", "origin", "HEAD")

    fresh_clone()
    shutil.copytree(cache / ".fdp", workspace / ".fdp")  # the CI restores its cache
    for name in ("a", "b"):
        fdp("pull", f"{name}/config.yaml")
    statuses = {
        name: {
            r["task"]: r for r in json.loads(fdp("status", f"{name}/config.yaml", "--json").stdout)
        }
        for name in ("a", "b")
    }
    assert statuses["a"]["job"]["state"] == "up-to-date"
    assert statuses["b"]["job"]["state"] == "will-run"
    assert "run_metadata changed (description)" in statuses["b"]["job"]["reason"]
    assert "-- job" in fdp("run", "a/config.yaml").stdout
    assert ".  job" in fdp("run", "b/config.yaml").stdout

    # a commit that changes the code (any tracked file but a config) reruns both
    (editor / "model.py").write_text(TWO_CONFIG_MODEL + "# tidied\n", encoding="utf-8")
    git(editor, "commit", "-qam", "model: a comment")
    git(editor, "pull", "-q")
    git(editor, "push", "-q", "origin", "HEAD")
    git(workspace, "pull", "-q")
    for name in ("a", "b"):
        reason = json.loads(fdp("status", f"{name}/config.yaml", "--json").stdout)
        job = next(r for r in reason if r["task"] == "job")
        assert job["reason"].startswith("the code is at commit ")


# ------------------------------------------------------------------------ JSON for scripts
def test_list_and_verify_print_json_for_scripts(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.file("model.py", TWO_CONFIG_MODEL)
    env.config(
        {
            "run_metadata": {
                "description": "one",
                "default_output_namespace": "lab",
                "script": "python3 model.py results/one",
            },
            "write": [{"data_product": "results/one", "description": "one", "file_type": "txt"}],
        }
    )
    git_commit_all(env.project)
    env.fdp("run")
    products = json.loads(env.fdp("list", "--json").stdout)
    assert products == [
        {
            "data_product": "lab:results/one@0.0.1",
            "namespace": "lab",
            "name": "results/one",
            "version": "0.0.1",
        }
    ]
    [run] = json.loads(env.fdp("list", "runs", "--json").stdout)
    assert run["outputs"] == 1 and run["description"] == "one"
    fine = json.loads(env.fdp("verify", "--json").stdout)
    assert fine["ok"] is True and fine["problems"] == [] and fine["verified"] >= 1
    (env.data_store / "lab" / "results" / "one" / "0.0.1.txt").write_text("altered\n")
    bad = env.fdp("verify", "--json", check=False)
    assert bad.returncode == 1
    found = json.loads(bad.stdout)
    assert found["ok"] is False and found["modified"] == 1
    assert [p["kind"] for p in found["problems"]] == ["modified"]
    assert "results/one/0.0.1.txt" in found["problems"][0]["line"]
