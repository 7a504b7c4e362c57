"""`fdp validate`: precise one-line problems for bad configs, ok and warnings for good ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fdp_tasks.cli.main import main
from fdp_tasks.config import load_config, validate_config

DATA = Path(__file__).parent / "data" / "configs"
REFERENCE_CONFIGS = [
    "test_pull_config.yaml",
    "test_register.yaml",
    "test_wildcards_config.yaml",
    "seirs_config.yaml",
]


def snapshot(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def validate(tmp_path: Path, monkeypatch, capsys, text: str, name: str = "config.yaml"):
    """Write text to tmp_path/name, run `fdp validate name` there; return (rc, out, err)."""
    (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    rc = main(["validate", name])
    assert snapshot(tmp_path) == before, "validate must not write anything"
    out, err = capsys.readouterr()
    return rc, out, err


META = "run_metadata:\n  description: test\n  default_output_namespace: ns\n  script: echo hi\n"

BAD_CONFIGS = [
    (
        "missing-file-type",
        META + "write:\n  - data_product: a\n  - data_product: b\n    file_type: csv\n"
        "  - data_product: c\n",
        [
            "config.yaml: write[0].file_type: required key missing (a file type such as csv)",
            "config.yaml: write[2].file_type: required key missing (a file type such as csv)",
        ],
    ),
    (
        "bad-shell",
        "run_metadata:\n  shell: zsh\n  script: echo hi\n",
        [
            "config.yaml: run_metadata.shell: 'zsh' is not one of sh, bash, python, python3, R, "
            "julia, java, powershell, pwsh, batch"
        ],
    ),
    (
        "unknown-key-did-you-mean",
        "run_metadata:\n  descripton: typo\n",
        ["config.yaml: run_metadata.descripton: unknown key (did you mean 'description'?)"],
    ),
    (
        "unknown-top-level-key",
        META + "writes:\n  - data_product: a\n    file_type: csv\n",
        ["config.yaml: writes: unknown key (did you mean 'write'?)"],
    ),
    (
        "unquoted-number-version",
        META + "write:\n  - data_product: a\n    file_type: csv\n    use:\n      version: 1.0\n",
        [
            "config.yaml: write[0].use.version: got 1.0 (a number); versions are strings: quote it "
            'as a semantic version, e.g. "1.0.0"'
        ],
    ),
    (
        "not-semver",
        META + "read:\n  - data_product: a\n    use:\n      version: '1.0'\n",
        [
            "config.yaml: read[0].use.version: '1.0' is not a semantic version (like 1.0.0) nor a "
            "version incrementer (${{MAJOR}}, ${{MINOR}}, ${{PATCH}}, ${{BUILD}}, ${{PRERELEASE}}, "
            "${{LATEST}})"
        ],
    ),
    (
        "register-item-of-no-kind",
        META + "register:\n  - title: what is this\n",
        [
            "config.yaml: register[0]: a register item needs one of the keys namespace, author, "
            "external_object or data_product"
        ],
    ),
    (
        "register-namespace-typo",
        META + "register:\n  - namespace: PSU\n    fullname: Penn State\n",
        ["config.yaml: register[0].fullname: unknown key (did you mean 'full_name'?)"],
    ),
    (
        "external-object-without-identifier",
        META + "register:\n  - external_object: x\n    root: https://example.org/\n"
        "    path: a.csv\n",
        [
            "config.yaml: register[0]: an external_object needs identifier (e.g. a DOI URL) or "
            "unique_name with alternate_identifier_type"
        ],
    ),
    (
        "register-object-missing-root",
        META + "register:\n  - data_product: x\n    path: a.csv\n",
        [
            "config.yaml: register[0].root: required key missing (where the file lives: an "
            "https:// or file:// URL or a local directory)"
        ],
    ),
    (
        "unique-name-needs-type",
        META + "register:\n  - external_object: x\n    root: https://example.org/\n"
        "    path: a.csv\n    unique_name: thing\n",
        [
            "config.yaml: register[0].alternate_identifier_type: required key missing "
            "(needed with unique_name)"
        ],
    ),
    (
        "script-and-script-path",
        "run_metadata:\n  script: echo hi\n  script_path: run.sh\n",
        ["config.yaml: run_metadata: give either script or script_path, not both"],
    ),
    (
        "read-not-a-list",
        META + "read:\n  data_product: a\n",
        ["config.yaml: read: expected a list, got a mapping"],
    ),
    (
        "glob-in-register",
        META + "register:\n  - data_product: out/*\n    root: data\n    path: a.csv\n",
        [
            "config.yaml: register[0].data_product: 'out/*' holds '*', which only a config's "
            "read or write pattern may hold"
        ],
    ),
    (
        "unknown-template-variable",
        "run_metadata:\n  script: echo ${{ WHOAMI }}\n",
        [
            "config.yaml: run_metadata.script: unknown template variable ${{WHOAMI}} (known: "
            "DATE, DATETIME, USER, USER_ID, REPO_DIR, CONFIG_DIR, SOURCE_CONFIG, LOCAL_TOKEN, "
            "GIT_BRANCH, GIT_REMOTE, GIT_TAG, RUN_ID, DATETIME-<format>)"
        ],
    ),
    (
        "incrementer-outside-version",
        "run_metadata:\n  description: ${{PATCH}}\n",
        [
            "config.yaml: run_metadata.description: ${{PATCH}} is a version incrementer, only "
            "allowed in versions"
        ],
    ),
    (
        "primary-not-boolean",
        META + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        "    primary: maybe\n",
        ["config.yaml: register[0].primary: expected true or false, got 'maybe'"],
    ),
    (
        "bad-release-date",
        META + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        "    release_date: last tuesday\n",
        [
            "config.yaml: register[0].release_date: 'last tuesday' is not a date (ISO 8601, e.g. "
            "2021-09-20T12:00:00)"
        ],
    ),
    (
        "deprecated-conflict",
        META + "write:\n  - data_product: a\n    file_type: csv\n    version: 1.0.0\n"
        "    use:\n      version: 2.0.0\n",
        [
            "config.yaml: write[0].version: conflicts with write[0].use.version; remove the "
            "deprecated version"
        ],
    ),
    (
        "error-after-inserted-namespace-item-points-at-original",
        META + "register:\n  - external_object: x\n    namespace_name: PSU\n"
        "    namespace_full_name: Penn State\n    root: https://example.org/\n"
        "    path: a.csv\n    identifier: https://doi.org/x\n    titel: typo\n",
        ["config.yaml: register[0].titel: unknown key (did you mean 'title'?)"],
    ),
    (
        "yaml-syntax-error",
        "run_metadata:\n  description: [unclosed\n",
        # the wording is libyaml's or PyYAML's, whichever parses
        [re.compile(r"config\.yaml:3:1: YAML syntax error: .*expected ',' or '\]'")],
    ),
    (
        "duplicate-key",
        "run_metadata:\n  description: a\n  description: b\n",
        ["config.yaml:3:3: duplicate key 'description'"],
    ),
    (
        "empty-file",
        "",
        [
            "config.yaml: the file is empty (expected a mapping with run_metadata, read, write, "
            "register)"
        ],
    ),
    (
        "top-level-list",
        "- run_metadata: {}\n",
        [
            "config.yaml: top level: expected a mapping with run_metadata, read, write, register; "
            "got a list"
        ],
    ),
]


@pytest.mark.parametrize("text,expected", [pytest.param(t, e, id=i) for i, t, e in BAD_CONFIGS])
def test_bad_config_gives_precise_lines(tmp_path, monkeypatch, capsys, text, expected):
    rc, out, err = validate(tmp_path, monkeypatch, capsys, text)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        assert want.fullmatch(line) if isinstance(want, re.Pattern) else line == want
    assert "ok" not in out


def test_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "nope.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == ["nope.yaml: no such file"]
    assert snapshot(tmp_path) == set()


def test_all_problems_collected_and_sorted(tmp_path, monkeypatch, capsys):
    text = (
        "write:\n  - data_product: a\n"
        "run_metadata:\n  shell: zsh\n  publik: true\n  script: echo hi\n"
        "read:\n  - use: {namespace: x}\n"
    )
    rc, _, err = validate(tmp_path, monkeypatch, capsys, text)
    assert rc == 2
    assert err.splitlines() == [
        "config.yaml: read[0].data_product: required key missing (the data product name, may "
        "hold '*')",
        "config.yaml: run_metadata.publik: unknown key (did you mean 'public'?)",
        "config.yaml: run_metadata.shell: 'zsh' is not one of sh, bash, python, python3, R, "
        "julia, java, powershell, pwsh, batch",
        "config.yaml: write[0].file_type: required key missing (a file type such as csv)",
    ]


def test_list_indexes_sort_numerically(tmp_path, monkeypatch, capsys):
    items = "".join(f"  - data_product: p{i}\n" for i in range(12))
    rc, _, err = validate(tmp_path, monkeypatch, capsys, META + "write:\n" + items)
    assert rc == 2
    paths = [line.split(": ")[1] for line in err.splitlines()]
    assert paths == [f"write[{i}].file_type" for i in range(12)]


@pytest.mark.parametrize("name", REFERENCE_CONFIGS)
def test_reference_configs_validate(tmp_path, monkeypatch, capsys, name):
    shutil.copy(DATA / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", name]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{name}: ok"]
    assert err == ""


def test_several_configs_one_bad(tmp_path, monkeypatch, capsys):
    shutil.copy(DATA / "seirs_config.yaml", tmp_path / "good.yaml")
    (tmp_path / "bad.yaml").write_text("run_metadata:\n  shell: zsh\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "good.yaml", "bad.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["good.yaml: ok"]
    assert err.startswith("bad.yaml: run_metadata.shell: 'zsh' is not one of")


def test_deprecated_forms_warn_and_normalise(tmp_path, monkeypatch, capsys):
    shutil.copy(DATA / "deprecated_config.yaml", tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "config.yaml"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["config.yaml: ok"]
    warnings = err.splitlines()
    assert warnings == [
        "warning: config.yaml: run_metadata.local_data_registry is deprecated, use "
        "run_metadata.local_data_registry_url instead",
        "warning: config.yaml: read[0].version is deprecated, use read[0].use.version instead",
        "warning: config.yaml: write[0].version is deprecated, use write[0].use.version instead",
        "warning: config.yaml: register[0].namespace is deprecated, use "
        "register[0].namespace_name instead",
        "warning: config.yaml: register[0]: namespace_full_name and namespace_website are "
        "deprecated; use a separate register item '- namespace: PSU' with full_name and website",
    ]

    cfg = load_config("config.yaml")
    assert cfg.path == tmp_path / "config.yaml"
    assert len(cfg.warnings) == 5
    data = cfg.data
    assert data["run_metadata"]["local_data_registry_url"] == "http://127.0.0.1:8000/api/"
    assert "local_data_registry" not in data["run_metadata"]
    assert data["read"][0] == {"data_product": "model/input", "use": {"version": "1.0.0"}}
    assert data["write"][0]["use"] == {"version": "${{MINOR}}"}
    assert data["register"][0] == {
        "namespace": "PSU",
        "full_name": "Pennsylvania State University",
        "website": "https://ror.org/04p491231",
    }
    obj = data["register"][1]
    assert obj["namespace_name"] == "PSU" and "namespace" not in obj
    assert "namespace_full_name" not in obj and "namespace_website" not in obj
    assert obj["primary"] is False
    assert obj["release_date"] == "2021-09-20T12:00:00"
    assert obj["authors"] == ["https://orcid.org/0000-0002-4424-9890", "https://ror.org/04v2xmd71"]


def test_deprecated_warnings_are_logged(tmp_path, caplog):
    shutil.copy(DATA / "deprecated_config.yaml", tmp_path / "config.yaml")
    with caplog.at_level("WARNING"):
        load_config(tmp_path / "config.yaml")
    assert sum("deprecated" in r.getMessage() for r in caplog.records) == 5


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2021-09-20T12:00", "2021-09-20T12:00:00"),
        ("2021-09-20 12:00:05", "2021-09-20T12:00:05"),
        ("2021-09-20", "2021-09-20T00:00:00"),
        ("'2021-09-20T12:00:00Z'", "2021-09-20T12:00:00+00:00"),
    ],
)
def test_release_date_forms(tmp_path, raw, expected):
    path = tmp_path / "config.yaml"
    path.write_text(
        "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        f"    release_date: {raw}\n    primary: 'Yes'\n"
    )
    item = load_config(path).data["register"][0]
    assert item["release_date"] == expected
    assert item["primary"] is True


@pytest.mark.parametrize(
    "raw,expected",
    [("'on'", True), ("t", True), ("Y", True), ("1", True), ("'OFF'", False), ("f", False)],
)
def test_boolean_words_read_as_the_registry_reads_them(tmp_path, raw, expected):
    path = tmp_path / "config.yaml"
    item = "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
    path.write_text(item + f"    primary: {raw}\n")
    assert load_config(path).data["register"][0]["primary"] is expected


def test_validate_config_function_returns_lines():
    problems = validate_config({"write": [{"data_product": "a"}]}, "x.yaml")
    assert problems == [
        "x.yaml: run_metadata: write items need a script (run_metadata.script or "
        "run_metadata.script_path)",
        "x.yaml: write[0].file_type: required key missing (a file type such as csv)",
    ]
    assert validate_config({"run_metadata": {"description": "fine"}}, "x.yaml") == []


def test_cli_subprocess(tmp_path):
    (tmp_path / "config.yaml").write_text("run_metadata:\n  shell: zsh\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "fdp_tasks.cli.main", "validate", "config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("config.yaml: run_metadata.shell: 'zsh' is not one of sh,")
    assert snapshot(tmp_path) == {"config.yaml"}


# -- template variables in versions -----------------------------------------------------------


def test_dated_versions_validate(tmp_path, monkeypatch, capsys):
    shutil.copy(DATA / "dated_versions.yaml", tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "config.yaml"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["config.yaml: ok"]
    assert err == ""


@pytest.mark.parametrize(
    "version",
    ["0.${{DATE}}.0", "1.0.${{DATE}}", "1.0.0-${{GIT_BRANCH}}", "${{ DATE }}.0.0", "${{PATCH}}"],
)
def test_templated_write_version_validates(tmp_path, monkeypatch, capsys, version):
    text = (
        META
        + f"write:\n  - data_product: a\n    file_type: csv\n    use:\n      version: '{version}'\n"
    )
    rc, out, err = validate(tmp_path, monkeypatch, capsys, text)
    assert (rc, out, err) == (0, "config.yaml: ok\n", "")


VERSION_PROBLEMS = [
    (
        "datetime-is-not-semver",
        META + "write:\n  - data_product: a\n    file_type: csv\n    use:\n"
        "      version: ${{DATETIME}}\n",
        "config.yaml: write[0].use.version: '${{DATETIME}}' expands to '2024-11-23T12:34:56', "
        "which is not a semantic version (like 1.0.0)",
    ),
    (
        "zero-padded-field",
        META + "read:\n  - data_product: a\n    use:\n      version: 1.${{DATETIME-%m}}.0\n",
        "config.yaml: read[0].use.version: '1.${{DATETIME-%m}}.0' expands to '1.01.0' at "
        "2024-01-02T03:04:05, which is not a semantic version (like 1.0.0)",
    ),
    (
        "default-version-with-path",
        "run_metadata:\n  default_read_version: 1.0.${{REPO_DIR}}\n",
        "config.yaml: run_metadata.default_read_version: '1.0.${{REPO_DIR}}' expands to "
        "'1.0./project', which is not a semantic version (like 1.0.0)",
    ),
    (
        "incrementer-inside-a-version",
        "run_metadata:\n  default_write_version: 1.${{MINOR}}.0\n",
        "config.yaml: run_metadata.default_write_version: ${{MINOR}} is a version incrementer: "
        "it must be the whole version (version: ${{MINOR}}), not part of one",
    ),
    (
        "unknown-variable-in-version",
        META + "write:\n  - data_product: a\n    file_type: csv\n    use:\n"
        "      version: 1.0.${{TODAY}}\n",
        "config.yaml: write[0].use.version: unknown template variable ${{TODAY}} (known: DATE, "
        "DATETIME, USER, USER_ID, REPO_DIR, CONFIG_DIR, SOURCE_CONFIG, LOCAL_TOKEN, GIT_BRANCH, "
        "GIT_REMOTE, "
        "GIT_TAG, RUN_ID, DATETIME-<format>)",
    ),
    (
        "register-incrementer",
        META + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        "    version: ${{PATCH}}\n",
        "config.yaml: register[0].version: '${{PATCH}}' is not a semantic version (like 1.0.0)",
    ),
    (
        "register-incrementer-inside",
        META + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        "    use:\n      version: 1.${{PATCH}}.${{DATE}}\n",
        "config.yaml: register[0].use.version: ${{PATCH}} is a version incrementer, not allowed "
        "here (give a version such as 1.0.0)",
    ),
    (
        "register-datetime",
        META + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n"
        "    version: ${{DATETIME-%Y.%m.%d}}\n",
        "config.yaml: register[0].version: '${{DATETIME-%Y.%m.%d}}' expands to '2024.01.02' "
        "at 2024-01-02T03:04:05, which is not a semantic version (like 1.0.0)",
    ),
]


@pytest.mark.parametrize(
    "text,expected", [pytest.param(t, e, id=i) for i, t, e in VERSION_PROBLEMS]
)
def test_templated_version_problems(tmp_path, monkeypatch, capsys, text, expected):
    rc, out, err = validate(tmp_path, monkeypatch, capsys, text)
    assert rc == 2
    assert err.splitlines() == [expected]
    assert out == ""


# -- a script for writes ----------------------------------------------------------------------

NO_SCRIPT = (
    "config.yaml: run_metadata: write items need a script (run_metadata.script or "
    "run_metadata.script_path)"
)


@pytest.mark.parametrize(
    "meta",
    [
        "run_metadata:\n  description: no script\n  default_output_namespace: ns\n",
        "",
        "run_metadata:\n  script: ''\n",
    ],
    ids=["no-script-key", "no-run-metadata", "empty-script"],
)
def test_writes_without_a_script(tmp_path, monkeypatch, capsys, meta):
    text = meta + "write:\n  - data_product: a\n    file_type: csv\n"
    rc, out, err = validate(tmp_path, monkeypatch, capsys, text)
    assert rc == 2
    assert err.splitlines() == [NO_SCRIPT]


def test_writes_with_a_script_path(tmp_path, monkeypatch, capsys):
    text = "run_metadata:\n  script_path: run.sh\nwrite:\n  - data_product: a\n    file_type: csv\n"
    assert validate(tmp_path, monkeypatch, capsys, text) == (0, "config.yaml: ok\n", "")


@pytest.mark.parametrize(
    "text",
    [
        META.replace("  script: echo hi\n", "")
        + "register:\n  - data_product: x\n    root: data\n    path: a.csv\n",
        META.replace("  script: echo hi\n", "") + "read:\n  - data_product: a\n",
        META.replace("  script: echo hi\n", "") + "write: []\n",
    ],
    ids=["register-only", "read-only", "empty-write-list"],
)
def test_no_script_needed_without_writes(tmp_path, monkeypatch, capsys, text):
    assert validate(tmp_path, monkeypatch, capsys, text) == (0, "config.yaml: ok\n", "")


def test_names_that_would_leave_the_data_store_are_refused(tmp_path, monkeypatch, capsys):
    text = (
        "run_metadata:\n  description: t\n  default_output_namespace: /etc\n  script: echo\n"
        "read:\n  - data_product: ../../secrets\n    use:\n      namespace: a\\b\n"
        "write:\n  - data_product: ok/name\n    file_type: csv\n"
    )
    rc, _, err = validate(tmp_path, monkeypatch, capsys, text)
    assert rc == 2
    assert err.splitlines() == [
        "config.yaml: read[0].data_product: '../../secrets' has a '..' segment; names cannot "
        "hold '.' or '..' segments",
        "config.yaml: read[0].use.namespace: namespace 'a\\\\b' holds '/', '\\' or NUL; a "
        "namespace is one folder name",
        "config.yaml: run_metadata.default_output_namespace: namespace '/etc' holds '/', '\\' "
        "or NUL; a namespace is one folder name",
    ]
