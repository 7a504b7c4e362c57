"""resolve(): the working config, with versions, namespaces, globs and variables made explicit."""

from __future__ import annotations

import fnmatch
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from support import git, git_commit_all

from fdp_tasks.config import Config, ResolveContext, load_config, resolve
from fdp_tasks.errors import ConfigError
from fdp_tasks.versions import Version, increment, latest, sort_versions

DATA = Path(__file__).parent / "data" / "configs"
NOW = datetime(2024, 3, 5, 14, 7, 9)
RUN_ID = "3f1c6a52-8f0e-4c8e-9d6e-1b2f3a4b5c6d"


class DictRegistry:
    """A RegistryView over {(namespace, name): [versions]}."""

    def __init__(self, products: dict[tuple[str, str], list[str]] | None = None):
        self.products = products or {}

    def versions(self, namespace: str, name: str) -> list[str]:
        return list(self.products.get((namespace, name), []))

    def names(self, namespace: str, pattern: str) -> list[str]:
        return [
            n for (ns, n) in self.products if ns == namespace and fnmatch.fnmatchcase(n, pattern)
        ]


def ctx(tmp_path: Path, products=None, **kw) -> ResolveContext:
    args = dict(
        registry=DictRegistry(products),
        data_store=tmp_path / "store",
        registry_url="http://127.0.0.1:8000/api/",
        user_namespace="me",
        user_name="Ada Lovelace",
        user_id="https://orcid.org/0000-0000-0000-0001",
        run_id=RUN_ID,
        now=NOW,
    )
    args.update(kw)
    return ResolveContext(**args)


def config(tmp_path: Path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def problems(exc: pytest.ExceptionInfo) -> list[str]:
    return exc.value.problems


# -- versions ---------------------------------------------------------------------------------


def test_semver_order():
    versions = [
        "1.0.0",
        "0.1.0",
        "0.1.0-alpha.1",
        "0.1.0-alpha",
        "0.1.0-alpha.beta",
        "0.1.0-beta.2",
        "0.1.0-beta.11",
        "0.1.0-rc.1",
        "0.10.0",
        "0.9.0",
        "junk",
    ]
    assert sort_versions(versions) == [
        "0.1.0-alpha",
        "0.1.0-alpha.1",
        "0.1.0-alpha.beta",
        "0.1.0-beta.2",
        "0.1.0-beta.11",
        "0.1.0-rc.1",
        "0.1.0",
        "0.9.0",
        "0.10.0",
        "1.0.0",
    ]
    assert latest(["0.1.0-alpha.1", "0.0.9"]) == "0.1.0-alpha.1"
    assert Version.parse("1.2.3-rc.1+b.5") < Version.parse("1.2.3")
    assert latest([]) is None


@pytest.mark.parametrize(
    "name,existing,expected",
    [
        ("PATCH", [], "0.0.1"),
        ("MINOR", [], "0.1.0"),
        ("MAJOR", [], "1.0.0"),
        ("PATCH", ["1.2.3", "0.9.9"], "1.2.4"),
        ("MINOR", ["1.2.3"], "1.3.0"),
        ("MAJOR", ["1.2.3"], "2.0.0"),
        ("PATCH", ["1.2.3-rc.1"], "1.2.3"),
        ("PRERELEASE", ["1.2.3"], "1.2.4-rc.1"),
        ("PRERELEASE", ["1.2.4-rc.1"], "1.2.4-rc.2"),
        ("BUILD", ["1.2.3"], "1.2.3+build.1"),
        ("LATEST", ["0.2.0", "0.10.0"], "0.10.0"),
    ],
)
def test_incrementers(name, existing, expected):
    assert increment(name, existing) == expected


# -- writes -----------------------------------------------------------------------------------

WRITE = """run_metadata:
  default_output_namespace: SEIRS
  script: echo run
write:
  - data_product: out
    file_type: csv
  - data_product: minor
    file_type: csv
    use:
      version: ${{ MINOR }}
  - data_product: fresh
    file_type: png
    public: false
    description: a figure
"""


def test_write_versions_increment(tmp_path):
    cfg = config(tmp_path, WRITE)
    work = resolve(
        cfg, ctx(tmp_path, {("SEIRS", "out"): ["1.0.0", "0.3.0"], ("SEIRS", "minor"): ["1.2.3"]})
    )
    write = work["write"]
    assert write[0] == {
        "data_product": "out",
        "description": "",
        "file_type": "csv",
        "public": True,
        "use": {"data_product": "out", "namespace": "SEIRS", "version": "1.0.1"},
    }
    assert write[1]["use"]["version"] == "1.3.0"
    assert write[2]["use"]["version"] == "0.0.1"
    assert write[2]["public"] is False and write[2]["description"] == "a figure"


def test_write_versions_left_unresolved_when_asked(tmp_path):
    cfg = config(tmp_path, WRITE)
    work = resolve(cfg, ctx(tmp_path, resolve_writes=False))
    assert [w["use"]["version"] for w in work["write"]] == [
        "${{PATCH}}",
        "${{ MINOR }}",
        "${{PATCH}}",
    ]


def test_default_write_version_from_run_metadata(tmp_path):
    cfg = config(
        tmp_path, WRITE.replace("  script:", "  default_write_version: ${{MAJOR}}\n  script:")
    )
    work = resolve(cfg, ctx(tmp_path, {("SEIRS", "out"): ["1.0.0"]}))
    assert work["write"][0]["use"]["version"] == "2.0.0"
    # consumed, not copied through, as the reference deletes it
    assert "default_write_version" not in work["run_metadata"]


def test_existing_write_version_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(
        "run_metadata:\n  default_output_namespace: SEIRS\n  script: echo hi\n"
        "write:\n  - data_product: out\n    file_type: csv\n    use:\n      version: 1.0.0\n"
    )
    cfg = load_config("config.yaml")
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, {("SEIRS", "out"): ["1.0.0"]}))
    assert problems(exc) == [
        "config.yaml: write[0].use.version: SEIRS:out@1.0.0 already exists in the local registry"
    ]
    assert exc.value.exit_code == 2


def test_write_latest_is_an_error(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: echo hi\n"
        "write:\n  - data_product: a\n    file_type: csv\n    use:\n      version: ${{LATEST}}\n",
    )
    with pytest.raises(ConfigError, match=r"write\[0\].use.version: a write cannot use"):
        resolve(cfg, ctx(tmp_path))


# -- reads ------------------------------------------------------------------------------------

READ = """run_metadata:
  default_input_namespace: PSU
read:
  - data_product: params
  - data_product: pinned
    description: a pinned read
    use:
      version: 0.1.0
  - data_product: alias
    use:
      data_product: other
      namespace: elsewhere
      component: table
"""


def test_read_latest_and_literal(tmp_path):
    cfg = config(tmp_path, READ)
    reg = {
        ("PSU", "params"): ["0.2.0", "0.10.0", "0.9.0"],
        ("PSU", "pinned"): ["0.1.0", "0.2.0"],
        ("elsewhere", "other"): ["2.0.0"],
    }
    read = resolve(cfg, ctx(tmp_path, reg))["read"]
    assert read == [
        {
            "data_product": "params",
            "use": {"data_product": "params", "namespace": "PSU", "version": "0.10.0"},
        },
        {
            "data_product": "pinned",
            "description": "a pinned read",
            "use": {"data_product": "pinned", "namespace": "PSU", "version": "0.1.0"},
        },
        {
            "data_product": "alias",
            "use": {
                "data_product": "other",
                "namespace": "elsewhere",
                "version": "2.0.0",
                "component": "table",
            },
        },
    ]


def test_missing_reads_are_errors(tmp_path):
    cfg = config(tmp_path, READ)
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, {("PSU", "pinned"): ["0.2.0"]}))
    # a pinned version is taken as given, with no look-up, until a run needs it
    assert problems(exc) == [
        f"{cfg.path}: read[0]: PSU:params has no version in the local registry: pull it first "
        "(`fdp pull`), or register it",
        f"{cfg.path}: read[2]: elsewhere:other has no version in the local registry: pull it "
        "first (`fdp pull`), or register it",
    ]
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, {("PSU", "pinned"): ["0.2.0"]}, require_inputs=True))
    assert (
        f"{cfg.path}: read[1].use.version: PSU:pinned@0.1.0 is not in the local registry (the "
        "local registry has 0.2.0): pull it first (`fdp pull`)"
    ) in problems(exc)


def test_pinned_read_resolves_offline_and_names_the_key_written(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  default_input_namespace: PSU\n"
        "read:\n  - data_product: params\n    version: 0.0.1\n",
    )
    read = resolve(cfg, ctx(tmp_path))["read"]
    assert read[0]["use"]["version"] == "0.0.1"
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, require_inputs=True))
    # the user wrote read[0].version (a deprecated form), not read[0].use.version
    assert problems(exc) == [
        f"{cfg.path}: read[0].version: PSU:params@0.0.1 is not in the local registry: pull it "
        "first (`fdp pull`)"
    ]


def test_cache_read_skips_registry(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  default_input_namespace: PSU\nread:\n"
        "  - data_product: local\n    use:\n      version: 1.0.0\n"
        "      cache: data/local.csv\n",
    )
    read = resolve(cfg, ctx(tmp_path))["read"]
    assert read[0]["use"] == {
        "data_product": "local",
        "namespace": "PSU",
        "version": "1.0.0",
        "cache": str(tmp_path / "data" / "local.csv"),
    }


def test_glob_expands_to_latest_of_each(tmp_path):
    shutil.copy(DATA / "test_wildcards_config.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    reg = {
        ("testing", "test/data/a"): ["0.0.1", "0.1.0"],
        ("testing", "test/data/b"): ["1.0.0"],
        ("testing", "test/other"): ["1.0.0"],
        ("elsewhere", "test/data/c"): ["1.0.0"],
    }
    read = resolve(cfg, ctx(tmp_path, reg))["read"]
    assert [(r["data_product"], r["use"]["version"]) for r in read] == [
        ("test/data/a", "0.1.0"),
        ("test/data/b", "1.0.0"),
    ]
    assert all(r["use"]["namespace"] == "testing" for r in read)
    assert all(r["use"]["data_product"] == r["data_product"] for r in read)


def test_glob_matching_nothing_is_an_error(tmp_path):
    shutil.copy(DATA / "test_wildcards_config.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, {("testing", "other"): ["1.0.0"]}))
    assert problems(exc) == [
        f"{cfg.path}: read[0].data_product: 'test/data/*' matches no data product in "
        "namespace testing of the local registry (pull them first)"
    ]


# -- namespaces and run_metadata --------------------------------------------------------------


def test_namespaces_default_to_user_namespace(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: |\n    echo one\n    echo two\n"
        "write:\n  - data_product: out\n    file_type: csv\n",
    )
    work = resolve(cfg, ctx(tmp_path, user_namespace="alice"))
    meta = work["run_metadata"]
    assert meta["default_input_namespace"] == "alice"
    assert meta["default_output_namespace"] == "alice"
    assert work["write"][0]["use"]["namespace"] == "alice"


def test_missing_namespaces_are_the_users_never_the_other_key(tmp_path):
    # Running another group's model writes into your own namespace, not theirs.
    cfg = config(
        tmp_path,
        "run_metadata:\n  default_input_namespace: theirs\n  script: echo hi\n"
        "read:\n  - data_product: params\n    use:\n      version: 1.0.0\n"
        "write:\n  - data_product: out\n    file_type: csv\n",
    )
    work = resolve(cfg, ctx(tmp_path, user_namespace="mine"))
    assert work["run_metadata"]["default_output_namespace"] == "mine"
    assert work["write"][0]["use"]["namespace"] == "mine"
    assert work["read"][0]["use"]["namespace"] == "theirs"
    work = resolve(cfg, ctx(tmp_path, user_namespace="x", user_output_namespace="out-ns"))
    assert work["write"][0]["use"]["namespace"] == "out-ns"
    with pytest.raises(ConfigError, match="default_output_namespace: not set"):
        resolve(cfg, ctx(tmp_path, user_namespace=None))


def test_no_namespace_anywhere(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: echo hi\nwrite:\n  - data_product: out\n    file_type: csv\n",
    )
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, user_namespace=None))
    assert problems(exc) == [
        f"{cfg.path}: run_metadata.default_output_namespace: not set, and no user namespace is "
        "configured (set it here, or run `fdp init --namespace NS`)"
    ]
    # Nothing needs a namespace: fine.
    cfg = config(tmp_path, "run_metadata:\n  script: echo hi\n")
    meta = resolve(cfg, ctx(tmp_path, user_namespace=None))["run_metadata"]
    assert "default_output_namespace" not in meta


def test_run_metadata_defaults_explicit(tmp_path):
    cfg = config(tmp_path, "run_metadata:\n  script_path: scripts/run.py\n")
    meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta == {
        "description": "",
        "default_input_namespace": "me",
        "default_output_namespace": "me",
        "write_data_store": str(tmp_path / "store") + "/",
        "local_data_registry_url": "http://127.0.0.1:8000/api/",
        "script_path": str(tmp_path / "scripts" / "run.py"),
        "shell": "python",
        "public": True,
        "local_repo": str(tmp_path),
        "remote_repo": tmp_path.as_uri(),  # never blank: registries refuse that
        "latest_commit": "0" * 40,
        "api_version": "1.0.0",
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_details_from_local_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "config.yaml").write_text(
        "run_metadata:\n  script: echo ${{GIT_BRANCH}} ${{REPO_DIR}} ${{GIT_REMOTE}}\n"
    )
    git_commit_all(repo, "c")  # on branch main
    git(repo, "remote", "add", "origin", "https://example.org/r.git")
    head = git(repo, "rev-parse", "HEAD")
    cfg = load_config(repo / "sub" / "config.yaml")
    meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta["latest_commit"] == head
    assert meta["remote_repo"] == "https://example.org/r.git"
    assert meta["script"] == f"echo main {repo.resolve()} https://example.org/r.git"
    # local_repo defaults to the root of the repository holding the config
    assert meta["local_repo"] == str(repo.resolve())
    (repo / "sub" / "config.yaml").write_text("run_metadata:\n  script: echo changed\n")
    meta = resolve(load_config(repo / "sub" / "config.yaml"), ctx(tmp_path))["run_metadata"]
    assert meta["latest_commit"] == head + "-dirty"


def test_git_variable_outside_a_repo_is_an_error(tmp_path):
    cfg = config(tmp_path, "run_metadata:\n  script: echo ${{GIT_TAG}}\n")
    with pytest.raises(ConfigError, match=r"run_metadata.script: \$\{\{GIT_TAG\}\} has no value"):
        resolve(cfg, ctx(tmp_path))


# -- template variables -----------------------------------------------------------------------


def test_template_variables(tmp_path):
    cfg = config(
        tmp_path,
        (
            "run_metadata:\n"
            "  description: run ${{RUN_ID}} by ${{ USER }} (${{USER_ID}})\n"
            "  script: python ${{ CONFIG_DIR }}/run.py --date ${{DATE}} --at ${{DATETIME}}"
            " --year ${{DATETIME-%Y}} --cfg ${{SOURCE_CONFIG}}\n"
            "write:\n  - data_product: out/${{DATE}}\n    file_type: csv\n"
        ),
    )
    work = resolve(cfg, ctx(tmp_path))
    meta = work["run_metadata"]
    assert meta["description"] == (
        f"run {RUN_ID} by Ada Lovelace (https://orcid.org/0000-0000-0000-0001)"
    )
    # CONFIG_DIR is the job directory (here the one a run started now would get), with a
    # trailing separator as the reference writes it; SOURCE_CONFIG the config's file name.
    job = tmp_path / "store" / "jobs" / "20240305-140709-000000"
    assert meta["script"] == (
        f"python {job}//run.py --date 20240305 --at 2024-03-05T14:07:09 --year 2024"
        " --cfg config.yaml"
    )
    assert work["write"][0]["data_product"] == "out/20240305"
    assert work["write"][0]["use"]["version"] == "0.0.1"


def test_version_fields_keep_incrementers(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  default_output_namespace: ns\n  default_write_version: ${{MINOR}}\n"
        "  script: echo\nwrite:\n  - data_product: out\n    file_type: csv\n",
    )
    work = resolve(cfg, ctx(tmp_path, resolve_writes=False))
    assert "default_write_version" not in work["run_metadata"]
    assert work["write"][0]["use"]["version"] == "${{MINOR}}"


def test_user_unset_is_an_error(tmp_path):
    cfg = config(tmp_path, "run_metadata:\n  description: by ${{USER}}\n")
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, user_name=None))
    assert problems(exc) == [
        f"{cfg.path}: run_metadata.description: ${{{{USER}}}} has no value: no user name is "
        "configured"
    ]


def test_unknown_variable_is_an_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("run_metadata:\n  script: echo ${{NOPE}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert problems(exc)[0].startswith(
        f"{path}: run_metadata.script: unknown template variable ${{{{NOPE}}}}"
    )


# -- register ---------------------------------------------------------------------------------


def test_register_items_become_reads(tmp_path):
    shutil.copy(DATA / "test_register.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    work = resolve(cfg, ctx(tmp_path))  # empty registry: register items are pinned
    objects = work["register"][1:]
    assert [o["namespace_name"] for o in objects] == [
        "TestDataProduct",
        "PSU",
        "TestNameSpace",
        "UnregisteredNamespace",
        "UnregisteredNamespace",
    ]
    assert all(o["root"] == f"file://{tmp_path}/data/" for o in objects)
    assert all("use" not in o for o in objects)
    assert objects[0]["authors"] == ["https://github.com/FAIRDataPipeline"]
    assert work["read"] == [
        {
            "data_product": o["data_product"],
            "use": {
                "data_product": o["data_product"],
                "namespace": o["namespace_name"],
                "version": "1.0.0",
            },
        }
        for o in objects
    ]
    assert work["register"][0] == {
        "namespace": "TestNameSpace",
        "full_name": "FairDataPipeline Namespace Test",
    }


def test_register_read_not_duplicated_and_latest_sees_pinned(tmp_path):
    cfg = config(
        tmp_path,
        (
            "run_metadata:\n  default_input_namespace: PSU\n"
            "read:\n  - data_product: params\n"
            "register:\n  - external_object: params\n    namespace_name: PSU\n"
            "    root: https://example.org/files\n    path: /p.csv\n"
            "    identifier: https://doi.org/x\n    version: 2.0.0\n"
        ),
    )
    work = resolve(cfg, ctx(tmp_path, {("PSU", "params"): ["1.0.0"]}))
    assert work["read"] == [
        {
            "data_product": "params",
            "use": {"data_product": "params", "namespace": "PSU", "version": "2.0.0"},
        }
    ]
    obj = work["register"][0]
    assert obj["root"] == "https://example.org/files/"
    assert obj["path"] == "p.csv"
    assert obj["file_type"] == "csv"


def test_seirs_working_config_has_what_the_language_api_reads(tmp_path):
    shutil.copy(DATA / "seirs_config.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    # no default_output_namespace: outputs go to the user's namespace ("me"), not rfield
    work = resolve(cfg, ctx(tmp_path, {("me", "SEIRS_model/results/figure/python"): ["0.0.1"]}))
    assert yaml.safe_load(yaml.safe_dump(work)) == work
    meta = work["run_metadata"]
    for key in (
        "local_data_registry_url",
        "write_data_store",
        "default_output_namespace",
        "default_input_namespace",
        "public",
        "latest_commit",
        "remote_repo",
        "description",
    ):
        assert key in meta
    assert meta["remote_repo"] == "https://github.com/FAIRDataPipeline/pyDataPipeline.git"
    assert meta["shell"] == "sh"
    for item in work["write"]:
        assert {"description", "file_type"} <= set(item)
        assert set(item["use"]) >= {"namespace", "version", "data_product"}
    assert [w["use"]["version"] for w in work["write"]] == ["0.0.1", "0.0.2"]
    assert {w["use"]["namespace"] for w in work["write"]} == {"me"}
    assert work["read"] == [
        {
            "data_product": "SEIRS_model/parameters",
            "use": {
                "data_product": "SEIRS_model/parameters",
                "namespace": "PSU",
                "version": "1.0.0",
            },
        }
    ]
    ext = work["register"][1]
    assert ext["release_date"] == "2021-09-20T12:00:00" and ext["primary"] is True


def test_deprecated_config_resolves(tmp_path):
    shutil.copy(DATA / "deprecated_config.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    work = resolve(
        cfg, ctx(tmp_path, {("PSU", "model/input"): ["1.0.0"], ("PSU", "model/output"): ["0.1.0"]})
    )
    assert work["write"][0]["use"]["version"] == "0.2.0"
    assert work["read"][0]["use"]["version"] == "1.0.0"
    assert work["read"][1]["data_product"] == "model/parameters"


# -- template variables in versions -----------------------------------------------------------


def test_dated_versions_resolve(tmp_path):
    shutil.copy(DATA / "dated_versions.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    products = {
        ("PSU", "daily/cases"): ["0.20261122.0", "0.20261123.0"],
        ("PSU", "weekly/cases"): ["1.20261123.0-rc.1"],
        ("PSU", "model/summary"): ["0.4.2"],
    }
    work = resolve(cfg, ctx(tmp_path, products, now=datetime(2026, 11, 23, 8, 0, 0)))
    meta = work["run_metadata"]
    assert "default_read_version" not in meta and "default_write_version" not in meta
    assert meta["script"] == f"python3 {tmp_path}/store/jobs/20261123-080000-000000//model.py"
    assert [r["use"]["version"] for r in work["read"]] == [
        "0.20261123.0",
        "1.20261123.0-rc.1",
        "0.20261123.0",
        "1.0.20261123",
    ]
    assert [w["use"]["version"] for w in work["write"]] == [
        "1.0.20261123",
        f"2.0.20261123+run.{RUN_ID}",
        "0.5.0",  # incrementers keep their meaning
    ]
    assert [r["version"] for r in work["register"]] == ["0.20261123.0", "1.0.20261123"]


def test_dated_write_version_that_exists_is_an_error(tmp_path):
    shutil.copy(DATA / "dated_versions.yaml", tmp_path / "config.yaml")
    cfg = load_config(tmp_path / "config.yaml")
    products = {
        ("PSU", "daily/cases"): ["0.20240305.0"],
        ("PSU", "weekly/cases"): ["1.20240305.0-rc.1"],
        ("PSU", "model/results"): ["1.0.20240305"],
    }
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path, products))
    assert problems(exc) == [
        f"{cfg.path}: write[0]: PSU:model/results@1.0.20240305 already exists in the local registry"
    ]


def test_dated_versions_left_for_writes_when_not_resolving_writes(tmp_path):
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: echo hi\n"
        "write:\n  - data_product: a\n    file_type: csv\n    use:\n      version: 0.${{DATE}}.0\n",
    )
    work = resolve(cfg, ctx(tmp_path, resolve_writes=False))
    assert work["write"][0]["use"]["version"] == "0.20240305.0"


def test_version_expanding_to_no_semver_is_an_error(tmp_path):
    # A run-time variable: validation cannot know its value, resolution checks the result.
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: echo hi\n  default_write_version: 1.0.0-${{USER}}\n"
        "write:\n  - data_product: a\n    file_type: csv\n",
    )
    with pytest.raises(ConfigError) as exc:
        resolve(cfg, ctx(tmp_path))
    assert problems(exc) == [
        f"{cfg.path}: run_metadata.default_write_version: '1.0.0-${{{{USER}}}}' expands to "
        "'1.0.0-Ada Lovelace', which is not a semantic version (like 1.0.0)"
    ]
    # A config built in code skips validation: resolution still checks every version field.
    data = {
        "run_metadata": {"script": "echo hi"},
        "read": [{"data_product": "a", "use": {"version": "${{DATETIME}}"}}],
        "register": [
            {
                "data_product": "b",
                "root": "data",
                "path": "b.csv",
                "version": "1.${{DATETIME-%m}}.0",
            }
        ],
    }
    with pytest.raises(ConfigError) as exc:
        resolve(Config(path=tmp_path / "config.yaml", data=data), ctx(tmp_path))
    assert problems(exc) == [
        f"{tmp_path / 'config.yaml'}: read[0].use.version: '${{{{DATETIME}}}}' expands to "
        "'2024-03-05T14:07:09', which is not a semantic version (like 1.0.0)",
        f"{tmp_path / 'config.yaml'}: register[0].version: '1.${{{{DATETIME-%m}}}}.0' expands to "
        "'1.03.0', which is not a semantic version (like 1.0.0)",
    ]


# -- provenance without git -------------------------------------------------------------------


def provenance_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fdp_tasks.config.resolve" and "code runs will record" in r.getMessage()
    ]


@pytest.fixture
def no_git_above(tmp_path, monkeypatch):
    """tmp_path is not inside a git repository, whatever holds it."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


def test_no_git_repository_warns_once(tmp_path, caplog, no_git_above):
    cfg = config(tmp_path, "run_metadata:\n  script: echo hi\n")
    with caplog.at_level("WARNING"):
        meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta["latest_commit"] == "0" * 40 and meta["remote_repo"] == tmp_path.as_uri()
    assert provenance_warnings(caplog) == [
        f"{cfg.path}: {tmp_path} is not a git repository: code runs will record no "
        f"commit (latest_commit {'0' * 40}) and the local repository {tmp_path.as_uri()} as "
        "remote_repo"
    ]
    caplog.clear()
    with caplog.at_level("WARNING"):
        resolve(cfg, ctx(tmp_path))
        resolve(cfg, ctx(tmp_path))
    assert provenance_warnings(caplog) == []  # once per process, not once per resolve()


def test_local_repo_not_a_repository_is_named(tmp_path, caplog, no_git_above):
    (tmp_path / "code").mkdir()
    cfg = config(
        tmp_path,
        "run_metadata:\n  script: echo hi\n  local_repo: code\n"
        "  remote_repo: https://example.org/r.git\n",
    )
    with caplog.at_level("WARNING"):
        meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta["remote_repo"] == "https://example.org/r.git"
    assert provenance_warnings(caplog) == [
        f"{cfg.path}: {tmp_path / 'code'} is not a git repository: code runs will "
        f"record no commit (latest_commit {'0' * 40})"
    ]


def test_git_missing_warns(tmp_path, caplog, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cfg = config(tmp_path, "run_metadata:\n  script_path: run.py\n")
    with caplog.at_level("WARNING"):
        meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta["latest_commit"] == "0" * 40
    assert provenance_warnings(caplog) == [
        f"{cfg.path}: git is not installed, so {tmp_path} cannot be inspected: code "
        f"runs will record no commit (latest_commit {'0' * 40}) and the local repository "
        f"{tmp_path.as_uri()} as remote_repo"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "run_metadata:\n  script: echo hi\n  latest_commit: 0123456789abcdef\n  remote_repo: ''\n",
        "run_metadata:\n  description: register only\n  default_output_namespace: ns\n"
        "register:\n  - data_product: x\n    root: data\n    path: a.csv\n",
    ],
    ids=["given-explicitly", "nothing-to-run"],
)
def test_no_provenance_warning(tmp_path, caplog, no_git_above, text):
    cfg = config(tmp_path, text)
    with caplog.at_level("WARNING"):
        resolve(cfg, ctx(tmp_path))
    assert provenance_warnings(caplog) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_repository_without_remote_warns_about_the_remote_only(tmp_path, caplog):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.yaml").write_text("run_metadata:\n  script: echo hi\n")
    git_commit_all(repo, "c")
    cfg = load_config(repo / "config.yaml")
    with caplog.at_level("WARNING"):
        meta = resolve(cfg, ctx(tmp_path))["run_metadata"]
    assert meta["latest_commit"] != "0" * 40
    assert provenance_warnings(caplog) == [
        f"{cfg.path}: the git repository at {repo} has no remote 'origin': code runs "
        f"will record the local repository {repo.as_uri()} as remote_repo"
    ]
    # With a remote, nothing to warn about.
    git(repo, "remote", "add", "origin", "https://example.org/r.git")
    caplog.clear()
    with caplog.at_level("WARNING"):
        resolve(cfg, ctx(tmp_path))
    assert provenance_warnings(caplog) == []
