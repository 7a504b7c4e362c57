"""Data product references: what a user typed (PartialRef) and the one product it names
(ProductRef). They parse and print the `namespace:name@version` form, refuse malformed text
saying what was expected, and are types the checker keeps apart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, Env, register_only

from fdp_tasks.errors import BadInput
from fdp_tasks.refs import PartialRef, ProductRef, RefError
from fdp_tasks.versions import Version, newest_of_each_name

# -- parsing and formatting -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["ns:name@1.0.0", "ada:results/output@0.0.1", "a:b/c/d@1.2.3-rc.1+build.5", "x:a:b@2.0.0"],
)
def test_product_refs_round_trip(text: str) -> None:
    ref = ProductRef.parse(text)
    assert str(ref) == text
    assert ProductRef.parse(str(ref)) == ref
    assert isinstance(ref.version, Version)
    assert ref.partial().pinned and str(ref.partial()) == text


def test_product_ref_parts() -> None:
    ref = ProductRef.parse("  lab:model/params@1.10.0 ")
    assert (ref.namespace, ref.name, ref.version) == ("lab", "model/params", Version(1, 10, 0))
    assert ref.version_text == "1.10.0"
    assert ref == ProductRef.of("lab", "model/params", "1.10.0")
    assert hash(ref) == hash(ProductRef.of("lab", "model/params", Version(1, 10, 0)))


@pytest.mark.parametrize(
    "text,parts",
    [
        ("name", (None, "name", None)),
        ("ns:name", ("ns", "name", None)),
        ("name@1.0.0", (None, "name", "1.0.0")),
        ("ns:results/*@${{MINOR}}", ("ns", "results/*", "${{MINOR}}")),
        ("ns:name@latest", ("ns", "name", "latest")),
        ("ns:name@${{ LATEST }}", ("ns", "name", "${{ LATEST }}")),
    ],
)
def test_partial_refs_round_trip(text: str, parts: tuple[str | None, str, str | None]) -> None:
    ref = PartialRef.parse(text)
    assert (ref.namespace, ref.name, ref.version) == parts
    assert str(ref) == text
    assert PartialRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text,said",
    [
        ("", "is empty; expected namespace:name@version"),
        ("   ", "is empty; expected namespace:name@version"),
        ("ns:name@", "nothing after '@'; expected a version"),
        (":name@1.0.0", "nothing before ':'; expected a namespace"),
        ("ns:@1.0.0", "names no data product; expected namespace:name@version"),
        ("@1.0.0", "names no data product"),
        ("ns:a@1.0.0@2.0.0", "more than one '@'"),
        ("ns:name@1.0", "version '1.0' is not a semantic version (like 1.0.0), 'latest' or an"),
        ("ns:name@${{LASTEST}}", "is not a semantic version"),
    ],
)
def test_malformed_partial_refs_say_what_was_expected(text: str, said: str) -> None:
    with pytest.raises(RefError) as caught:
        PartialRef.parse(text)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text,said",
    [
        ("name@1.0.0", "gives no namespace; expected namespace:name@version"),
        ("ns:name", "gives no version; expected namespace:name@version"),
        ("name", "gives no namespace and version"),
        ("ns:name@${{PATCH}}", "'${{PATCH}}' is not a semantic version (like 1.0.0)"),
        ("ns:name@latest", "'latest' is not a semantic version"),
        ("ns:out/*@1.0.0", "is a pattern; expected one data product's name"),
        ("ns:name@01.0.0", "is not a semantic version"),
    ],
)
def test_product_refs_need_every_part(text: str, said: str) -> None:
    with pytest.raises(RefError) as caught:
        ProductRef.parse(text)
    assert said in str(caught.value)


def test_a_ref_error_is_bad_input_and_a_value_error() -> None:
    """Exit code 2 at the command line; callers that catch ValueError still do."""
    with pytest.raises(BadInput):
        ProductRef.parse("nope")
    with pytest.raises(ValueError):
        PartialRef.parse("a@b@c")


def test_a_product_ref_takes_no_version_string() -> None:
    """A record's version string passed as it is would silently look up nothing."""
    with pytest.raises(TypeError, match="must be a Version"):
        ProductRef("ns", "name", "1.0.0")  # type: ignore[arg-type]


def test_a_working_config_read_item_names_one_product() -> None:
    item = {"data_product": "params", "use": {"namespace": "lab", "version": "0.2.0"}}
    assert str(ProductRef.of_read_item(item)) == "lab:params@0.2.0"
    aliased = {"data_product": "p", "use": {"data_product": "model/params", "version": "1.0.0"}}
    assert str(ProductRef.of_read_item(aliased, "dflt")) == "dflt:model/params@1.0.0"
    with pytest.raises(RefError, match="gives no namespace or name"):
        ProductRef.of_read_item({"data_product": "p", "use": {"version": "1.0.0"}})
    with pytest.raises(RefError, match="'None' is not a semantic version"):
        ProductRef.of_read_item({"data_product": "p", "use": {"namespace": "lab"}})


# -- resolving --------------------------------------------------------------------------------

EXISTING = ["0.0.1", "0.2.0", "0.10.0", "0.10.0-rc.1"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("ns:p", "ns:p@0.10.0"),
        ("p", "dflt:p@0.10.0"),
        ("p@latest", "dflt:p@0.10.0"),
        ("p@${{LATEST}}", "dflt:p@0.10.0"),
        ("p@${{PATCH}}", "dflt:p@0.10.1"),
        ("p@${{MINOR}}", "dflt:p@0.11.0"),
        ("p@${{MAJOR}}", "dflt:p@1.0.0"),
        ("ns:p@0.0.7", "ns:p@0.0.7"),  # a pinned version is taken as given
    ],
)
def test_partial_refs_resolve_against_defaults_and_versions(text: str, expected: str) -> None:
    resolved = PartialRef.parse(text).resolve("dflt", EXISTING)
    assert resolved == ProductRef.parse(expected)
    assert str(resolved) == expected


def test_the_newest_of_each_name_in_semver_order_passing_over_what_does_not_parse() -> None:
    rows = [
        ("a", "0.9.0", 1),
        ("a", "0.10.0", 2),  # semver, not text order
        ("a", "1.0.0", 3),
        ("a", "1.0.0-rc.1", 4),  # a prerelease is below its release...
        ("b", "garbage", 5),  # a name with no version that parses has no newest
        ("c", "1.0.0-rc.1", 6),  # ...but above what came before it
        ("c", "0.1.0", 7),
        ("c", "v2", 8),
    ]
    assert list(newest_of_each_name(rows)) == [3, 6]
    assert list(newest_of_each_name(iter(rows))) == [3, 6]  # a stream, read once
    assert list(newest_of_each_name([])) == []


def test_an_incrementer_starts_from_nothing() -> None:
    assert str(PartialRef("ns", "new", "${{MINOR}}").resolve(None, [])) == "ns:new@0.1.0"


@pytest.mark.parametrize(
    "ref,default,said",
    [
        (PartialRef(None, "p"), None, "p names no namespace and there is no default"),
        (PartialRef("ns", "out/*"), None, "ns:out/* is a pattern"),
        (PartialRef("ns", "p", "latest"), None, "ns:p: no version exists yet"),
        (PartialRef("ns", "p"), "other", "ns:p: no version exists yet"),
    ],
)
def test_what_cannot_resolve_says_why(ref: PartialRef, default: str | None, said: str) -> None:
    with pytest.raises(RefError) as caught:
        ref.resolve(default, [])
    assert said in str(caught.value)


# -- at the command line ----------------------------------------------------------------------


def test_fdp_info_takes_a_reference_without_a_version_or_with_latest(tmp_path: Path) -> None:
    env = Env(tmp_path)
    for path, version in (("a.csv", "1.0.0"), ("b.csv", "1.2.0")):
        env.file(f"raw/{path}", f"x\n{version}\n")
        env.config(register_only("${{REPO_DIR}}/raw/", path, version=version))
        env.fdp("pull")
    for text in ("test:inputs/data", "test:inputs/data@latest", "test:inputs/data@1.2.0"):
        info = json.loads(env.fdp("info", text, "--json").stdout)
        assert info["data_product"] == "test:inputs/data@1.2.0", text
    older = json.loads(env.fdp("info", "test:inputs/data@1.0.0", "--json").stdout)
    assert older["data_product"] == "test:inputs/data@1.0.0"
    bumped = env.fdp("info", "test:inputs/data@${{PATCH}}", check=False)
    assert bumped.returncode == 2, bumped.output
    assert "give a version, or none (or latest) for the newest" in bumped.stderr
    missing = env.fdp("info", "test:inputs/data@3.0.0", check=False)
    assert missing.returncode == 1 and "is not in the local registry" in missing.stderr


def test_fdp_info_refuses_a_malformed_reference_saying_what_was_expected(tmp_path: Path) -> None:
    env = Env(tmp_path)
    result = env.fdp("info", "lab:@1.0.0", check=False)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert "names no data product; expected namespace:name@version" in result.stderr


# -- the types are kept apart -----------------------------------------------------------------

SNIPPET = """
from fdp_tasks.refs import PartialRef, ProductRef


def fetch(ref: ProductRef) -> str:
    return str(ref.version)


typed = PartialRef.parse("lab:model/params")
fetch({argument})
"""


def _mypy(tmp_path: Path, argument: str) -> subprocess.CompletedProcess[str]:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is a test dependency"
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET.format(argument=argument), encoding="utf-8")
    return subprocess.run(
        # only the snippet's own errors: the package's are test_lint's business
        [mypy, "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.mark.timeout(600)
def test_the_type_checker_refuses_a_partial_ref_where_a_product_ref_is_required(
    tmp_path: Path,
) -> None:
    refused = _mypy(tmp_path, "typed")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert 'Argument 1 to "fetch" has incompatible type "PartialRef"' in refused.stdout
    assert 'expected "ProductRef"' in refused.stdout
    # the same snippet, resolved first, passes: the refusal is about the type alone
    accepted = _mypy(tmp_path, 'typed.resolve("lab", ["1.0.0"])')
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
