"""`fdp validate` on mistakes real configs make: single-brace placeholders of older configs and
the ${NAME} and {{NAME}} typos of ${{NAME}}, release dates built from a bad DATETIME format, and
two write items for one output."""

from __future__ import annotations

import pytest
from support import Env

from fdp_tasks.config.templates import VARIABLES
from fdp_tasks.versions import INCREMENTERS

META = "run_metadata:\n  description: test\n  default_output_namespace: ns\n  script: echo hi\n"
OBJECT = "  - external_object: table\n    identifier: https://doi.org/10.1/x\n"


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def validate(env: Env, text: str) -> tuple[int, list[str], list[str]]:
    """Run `fdp validate config.yaml` on text; (exit code, stdout lines, stderr lines)."""
    env.file("config.yaml", text)
    result = env.fdp("validate", "config.yaml", check=False)
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


# -- single-brace placeholders ----------------------------------------------------------------


def test_a_value_yaml_reads_as_a_mapping_gets_the_hint(env: Env) -> None:
    text = META + "register:\n" + OBJECT + "    root: {CONFIG_DIR}\n    path: a.csv\n"
    rc, out, err = validate(env, text)
    assert rc == 2
    assert out == []
    assert err == [
        "config.yaml: register[0].root: YAML reads {CONFIG_DIR} as a mapping, not a template "
        "variable; did you mean ${{CONFIG_DIR}}?"
    ]


def test_a_placeholder_followed_by_text_names_line_and_key_path(env: Env) -> None:
    # `{CONFIG_DIR}/data/` is a YAML syntax error: a flow mapping followed by more text
    text = META + "register:\n" + OBJECT + "    root: {CONFIG_DIR}/data/\n    path: a.csv\n"
    rc, _, err = validate(env, text)
    assert rc == 2
    assert err == [
        "config.yaml:8:11: register[0].root: YAML reads {CONFIG_DIR} as the start of a "
        "mapping, not a template variable; did you mean ${{CONFIG_DIR}}?"
    ]


def test_other_syntax_errors_are_reported_as_before(env: Env) -> None:
    text = META + "register:\n" + OBJECT + "    root: {CONFIG_DIR}/data/\n    path: [a.csv\n"
    rc, _, err = validate(env, text)
    assert rc == 2
    assert len(err) == 1
    assert err[0].startswith("config.yaml:") and "YAML syntax error" in err[0]


@pytest.mark.parametrize(
    "item,path,expected",
    [
        (
            "  - data_product: out\n    file_type: csv\n    use:\n      version: {PATCH}\n",
            "write[0].use.version",
            "YAML reads {PATCH} as a mapping, not a template variable; did you mean ${{PATCH}}?",
        ),
        (
            # the deprecated place of a version: the problem names the key the user wrote
            "  - data_product: out\n    file_type: csv\n    version: {MINOR}\n",
            "write[0].version",
            "YAML reads {MINOR} as a mapping, not a template variable; did you mean ${{MINOR}}?",
        ),
        (
            "  - data_product: out/{DATE}\n    file_type: csv\n",
            "write[0].data_product",
            "{DATE} is not a template variable; did you mean ${{DATE}}?",
        ),
        (
            "  - data_product: out\n    file_type: csv\n    description: '{USER} at {DATETIME}'\n",
            "write[0].description",
            "{USER} and {DATETIME} are not template variables; did you mean ${{USER}} and "
            "${{DATETIME}}?",
        ),
        (
            "  - data_product: out\n    file_type: csv\n    use:\n      version: {VERSION}\n",
            "write[0].use.version",
            "YAML reads {VERSION} as a mapping, not a template variable; did you mean a version "
            "incrementer (${{PATCH}}, ${{MINOR}} or ${{MAJOR}})?",
        ),
        (
            "  - data_product: out\n    file_type: csv\n    description: {DATETIME-%Y%m%d}\n",
            "write[0].description",
            "YAML reads {DATETIME-%Y%m%d} as a mapping, not a template variable; did you mean "
            "${{DATETIME-%Y%m%d}}?",
        ),
    ],
    ids=["incrementer", "deprecated-version", "inside-a-name", "two", "version", "datetime-fmt"],
)
def test_placeholders_in_values_are_errors(env: Env, item: str, path: str, expected: str) -> None:
    rc, _, err = validate(env, META + "write:\n" + item)
    assert rc == 2
    assert [line for line in err if not line.startswith("warning:")] == [
        f"config.yaml: {path}: {expected}"
    ]


@pytest.mark.parametrize("name", VARIABLES + INCREMENTERS)
def test_every_known_variable_gets_its_hint(env: Env, name: str) -> None:
    rc, _, err = validate(env, META + f"read:\n  - data_product: x\n    description: {{{name}}}\n")
    assert rc == 2
    assert err == [
        f"config.yaml: read[0].description: YAML reads {{{name}}} as a mapping, not a template "
        f"variable; did you mean ${{{{{name}}}}}?"
    ]


def test_placeholder_in_an_inline_script_only_warns(env: Env) -> None:
    script = (
        "  script: |\n"
        "    python3 ${{CONFIG_DIR}}/model.py {CONFIG_DIR}\n"
        "    echo ${HOME} ${CONFIG_DIR} | awk '{print}'\n"
    )
    text = "run_metadata:\n  description: test\n  default_output_namespace: ns\n" + script
    rc, out, err = validate(env, text)
    assert rc == 0
    assert out == ["config.yaml: ok"]
    assert err == [
        "warning: config.yaml: run_metadata.script: {CONFIG_DIR} and ${CONFIG_DIR} are passed "
        "to the shell as written; did you mean ${{CONFIG_DIR}}?"
    ]


def test_shell_braces_in_an_inline_script_are_quiet(env: Env) -> None:
    script = "  script: echo ${HOME} ${PWD} $((1+2)) | awk '{print $1}' && f() { true; }\n"
    text = "run_metadata:\n  description: test\n" + script
    assert validate(env, text) == (0, ["config.yaml: ok"], [])


def test_unknown_brace_words_are_not_placeholders(env: Env) -> None:
    text = META + "write:\n  - data_product: out\n    file_type: csv\n"
    text += "    description: 'columns {x} and {SOMETHING}'\n"
    assert validate(env, text) == (0, ["config.yaml: ok"], [])


# -- ${NAME} and {{NAME}}: one brace pair too few ----------------------------------------------


@pytest.mark.parametrize(
    "form", ["${%s}", "{{%s}}", "{{ %s }}"], ids=["dollar", "double", "spaced"]
)
@pytest.mark.parametrize("name", VARIABLES + INCREMENTERS + ("DATETIME-%Y%m%d",))
def test_typos_of_every_known_variable_in_values_are_errors(env: Env, name: str, form: str) -> None:
    written = form % name
    rc, out, err = validate(
        env, META + f"read:\n  - data_product: x\n    description: a {written}\n"
    )
    assert rc == 2
    assert out == []
    assert err == [
        f"config.yaml: read[0].description: {written.replace(' ', '')} is not a template "
        f"variable; did you mean ${{{{{name}}}}}?"
    ]


@pytest.mark.parametrize(
    "value,expected",
    [
        (
            # YAML reads it as a mapping whose key is a mapping
            "{{CONFIG_DIR}}",
            "config.yaml:8:11: register[0].root: YAML reads {{CONFIG_DIR}} as a mapping, not a "
            "template variable; did you mean ${{CONFIG_DIR}}?",
        ),
        (
            "{{ REPO_DIR }}/data/",
            "config.yaml:8:11: register[0].root: YAML reads {{REPO_DIR}} as the start of a "
            "mapping, not a template variable; did you mean ${{REPO_DIR}}?",
        ),
        (
            "${REPO_DIR}/data/",
            "config.yaml: register[0].root: ${REPO_DIR} is not a template variable; did you mean "
            "${{REPO_DIR}}?",
        ),
    ],
    ids=["double-whole", "double-start", "dollar-start"],
)
def test_typos_at_the_start_of_a_value(env: Env, value: str, expected: str) -> None:
    text = META + "register:\n" + OBJECT + f"    root: {value}\n    path: a.csv\n"
    rc, _, err = validate(env, text)
    assert rc == 2
    assert err == [expected]


def test_typos_name_the_key_path_the_user_wrote_once(env: Env) -> None:
    # the deprecated version key, and a register item after an inline namespace that becomes
    # an item of its own: each reported where the user wrote it, and only with its hint
    text = (
        META + "write:\n  - data_product: out\n    file_type: csv\n    version: ${MINOR}\n"
        "register:\n" + OBJECT + "    namespace_name: ns\n    namespace_full_name: N\n"
        "    root: https://example.org/\n    path: '{{SOURCE_CONFIG}}'\n"
    )
    rc, _, err = validate(env, text)
    assert rc == 2
    assert [line for line in err if not line.startswith("warning:")] == [
        "config.yaml: register[0].path: {{SOURCE_CONFIG}} is not a template variable; did you "
        "mean ${{SOURCE_CONFIG}}?",
        "config.yaml: write[0].version: ${MINOR} is not a template variable; did you mean "
        "${{MINOR}}?",
    ]


def test_all_three_typos_in_one_value(env: Env) -> None:
    text = META + "write:\n  - data_product: out\n    file_type: csv\n"
    text += "    description: '{USER}, ${USER} and {{DATE}} at ${{ DATE }}'\n"
    rc, _, err = validate(env, text)
    assert rc == 2
    assert err == [
        "config.yaml: write[0].description: {USER} and ${USER} and {{DATE}} are not template "
        "variables; did you mean ${{USER}} and ${{DATE}}?"
    ]


def test_correct_variables_and_other_braces_are_quiet(env: Env) -> None:
    text = META + "write:\n  - data_product: out\n    file_type: csv\n"
    text += "    description: '${{DATE}} ${{ USER }} ${{DATETIME-%Y}} ${HOME} {{x}} ${PATCHES}'\n"
    assert validate(env, text) == (0, ["config.yaml: ok"], [])


def test_typos_in_an_inline_script_only_warn(env: Env) -> None:
    script = (
        "  script: |\n"
        "    python3 ${{ CONFIG_DIR }}/model.py ${CONFIG_DIR}/config.yaml\n"
        "    cat {{CONFIG_DIR}}/config.yaml ${HOME}/x | awk '{print}'\n"
    )
    text = "run_metadata:\n  description: test\n  default_output_namespace: ns\n" + script
    rc, out, err = validate(env, text)
    assert rc == 0
    assert out == ["config.yaml: ok"]
    assert err == [
        "warning: config.yaml: run_metadata.script: ${CONFIG_DIR} and {{CONFIG_DIR}} are "
        "passed to the shell as written; did you mean ${{CONFIG_DIR}}?"
    ]


# -- release dates made of DATETIME formats ---------------------------------------------------


def register_with_date(release_date: str) -> str:
    return (
        META + "register:\n  - namespace: ns\n" + OBJECT + "    root: https://example.org/\n"
        f"    path: a.csv\n    release_date: '{release_date}'\n"
    )


def test_release_date_format_that_gives_no_date_is_an_error(env: Env) -> None:
    rc, _, err = validate(env, register_with_date("${{DATETIME-%Y-%m-%dT%H:%M:S}}"))
    assert rc == 2
    assert err == [
        "config.yaml: register[1].release_date: '${{DATETIME-%Y-%m-%dT%H:%M:S}}' expands to "
        "'2024-11-23T12:34:S', which is not a date (ISO 8601, e.g. 2021-09-20T12:00:00)"
    ]


def test_release_date_error_names_the_item_the_user_wrote(env: Env) -> None:
    # the inline namespace becomes a register item of its own before validation
    text = (
        META + "register:\n" + OBJECT + "    namespace_name: ns\n    namespace_full_name: N\n"
        "    root: https://example.org/\n    path: a.csv\n"
        "    release_date: ${{DATETIME-%d/%m/%Y}}\n"
    )
    rc, _, err = validate(env, text)
    assert rc == 2
    assert [line for line in err if not line.startswith("warning:")] == [
        "config.yaml: register[0].release_date: '${{DATETIME-%d/%m/%Y}}' expands to "
        "'23/11/2024', which is not a date (ISO 8601, e.g. 2021-09-20T12:00:00)"
    ]


@pytest.mark.parametrize(
    "release_date", ["${{DATETIME-%Y-%m-%d}}", "${{DATETIME}}", "${{DATETIME-%Y-%m-%dT%H:%M}}"]
)
def test_release_date_formats_that_give_a_date_pass(env: Env, release_date: str) -> None:
    assert validate(env, register_with_date(release_date)) == (0, ["config.yaml: ok"], [])


# -- the same output twice --------------------------------------------------------------------


def test_duplicate_write_items_are_refused_with_both_key_paths(env: Env) -> None:
    text = META + (
        "write:\n"
        "  - data_product: out\n    file_type: csv\n"
        "  - data_product: other\n    file_type: csv\n"
        "  - data_product: out\n    file_type: pdf\n    use:\n      version: ${{ PATCH }}\n"
        "  - data_product: alias\n    file_type: csv\n    use:\n      data_product: out\n"
        "      namespace: ns\n"
        "  - data_product: out\n    file_type: csv\n    use:\n      namespace: elsewhere\n"
        "  - data_product: out\n    file_type: csv\n    use:\n      version: 1.0.0\n"
        "  - data_product: out\n    file_type: csv\n    use:\n      version: 1.0.0\n"
    )
    rc, _, err = validate(env, text)
    assert rc == 2
    assert err == [
        "config.yaml: write[2]: writes the same data product as write[0] (ns:out@${{PATCH}})",
        "config.yaml: write[3]: writes the same data product as write[0] (ns:out@${{PATCH}})",
        "config.yaml: write[6]: writes the same data product as write[5] (ns:out@1.0.0)",
    ]


def test_default_write_version_makes_duplicates_too(env: Env) -> None:
    text = (
        "run_metadata:\n  description: t\n  script: echo\n  default_write_version: 2.0.0\n"
        "write:\n  - data_product: out\n    file_type: csv\n"
        "  - data_product: out\n    file_type: csv\n    use:\n      version: 2.0.0\n"
    )
    rc, _, err = validate(env, text)
    assert rc == 2
    # no default_output_namespace: both go to the user's own namespace
    assert err == ["config.yaml: write[1]: writes the same data product as write[0] (out@2.0.0)"]


def test_components_of_one_output_are_not_duplicates(env: Env) -> None:
    text = META + (
        "write:\n"
        "  - data_product: out\n    file_type: h5\n    use:\n      component: a\n"
        "  - data_product: out\n    file_type: h5\n    use:\n      component: b\n"
    )
    assert validate(env, text) == (0, ["config.yaml: ok"], [])
