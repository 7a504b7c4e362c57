"""How `fdp` ends, for every command alike: its exit codes (0 done, 1 failed, 2 bad input or
usage, 3 conflict, 130 interrupted) and errors as single `fdp: error:` lines on stderr, never a
traceback; `fdp status --exit-code`; what `doit` shows for the same tasks."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import REPO, CountingRegistry, Env, Result, producer, register_only, running

from fdp_tasks.files import write_secret

SCRIPT_ONLY = {
    "run_metadata": {"description": "a script", "default_output_namespace": "test"},
}


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("fdp: error: ")]


def one_error(result: Result, code: int) -> str:
    """The one error line of a command that had to end with `code`; every other line of its
    stderr is a usage or warning line."""
    assert result.returncode == code, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result)
    others = [line for line in result.stderr.splitlines() if not line.startswith("fdp: error: ")]
    assert all(line.startswith(("usage: ", "warning: ", " ")) for line in others), others
    return line


def script_config(env: Env, script: str) -> None:
    env.config({"run_metadata": {**SCRIPT_ONLY["run_metadata"], "script": script}})


# -- usage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["remote"], ["registry"], ["nosuch"], ["status", "--nosuch"], ["-v", "pull", "--nosuch"]],
    ids=["fdp", "remote", "registry", "unknown-command", "unknown-option", "verbose-option"],
)
def test_no_action_or_an_unknown_one_prints_usage_and_exits_2(
    tmp_path: Path, argv: list[str]
) -> None:
    result = Env(tmp_path).fdp(*argv, check=False)
    one_error(result, 2)
    assert result.stdout == ""
    assert result.stderr.startswith("usage: fdp")


def test_a_mistyped_command_is_answered_with_every_command(tmp_path: Path) -> None:
    line = one_error(Env(tmp_path).fdp("pul", check=False), 2)
    assert "invalid choice: 'pul'" in line
    assert all(f"'{name}'" in line for name in ("init", "pull", "push", "status", "sweep"))


def test_help_says_what_each_exit_code_means(tmp_path: Path) -> None:
    shown = Env(tmp_path).fdp("--help").stdout
    codes = re.findall(r"^  (\d+) +(\w+)", shown, re.MULTILINE)
    assert [code for code, _ in codes] == ["0", "1", "2", "3", "130"]
    assert "`fdp status --exit-code`" in shown


# -- bad input: exit 2 ----------------------------------------------------------------------------


def test_a_missing_or_broken_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert "no such config file" in one_error(env.fdp("run", "nope.yaml", check=False), 2)
    env.file("config.yaml", "run_metadata: [\n")
    for result in (env.fdp("run", check=False), env.fdp("status", check=False)):
        assert "YAML syntax error" in one_error(result, 2)
    assert "YAML syntax error" in one_error(env.doit(check=False), 2)


@pytest.mark.parametrize(
    ("settings", "said"),
    [("user: [\n", "settings.yaml:2:1: not valid YAML"), ("remotes: 5\n", "remotes: expected")],
    ids=["yaml", "shape"],
)
def test_broken_settings_are_one_line_naming_the_file(
    tmp_path: Path, settings: str, said: str
) -> None:
    env = Env(tmp_path)
    script_config(env, "true")
    env.file(".fdp/settings.yaml", settings)
    for args in (["status"], ["run"], ["remote", "add", "other", str(tmp_path)], ["list"]):
        assert said in one_error(env.fdp(*args, check=False), 2), args


def test_a_malformed_argument_is_exit_2(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert "give the namespace" in one_error(env.fdp("info", "results/output", check=False), 2)
    for url, said in [
        ("htp://example.org/api/", "not htp://"),
        ("http://[::1/api/", "not a valid URL"),
        ("http://:8000/api/", "names no host"),
    ]:
        assert said in one_error(env.fdp("remote", "add", "origin", url, check=False), 2)
    assert not (env.project / ".fdp" / "settings.yaml").exists()  # nothing was recorded


def test_a_token_file_others_can_read_is_exit_2(tmp_path: Path, registry_server) -> None:
    env = producer(tmp_path, outputs=1)
    env.fdp("run")
    server = registry_server()
    token_file = tmp_path / "token"
    write_secret(token_file, server.token)
    env.add_remote(server.api_url, token_file)
    token_file.chmod(0o644)
    line = one_error(env.fdp("push", check=False), 2)
    assert "chmod 600" in line


# -- failures: exit 1 -----------------------------------------------------------------------------


def test_a_failed_task_is_one_line_from_fdp_and_from_doit(tmp_path: Path) -> None:
    env = Env(tmp_path)
    script_config(env, "exit 3")
    for result in (env.fdp("run", check=False), env.doit(check=False)):
        line = one_error(result, 1)
        assert line.startswith("fdp: error: job: the script exited with status 3")
        assert result.executed == ["job"]


def test_a_remote_that_does_not_answer_is_one_line_and_exit_1(
    tmp_path: Path, refused_url: str
) -> None:
    env = Env(tmp_path)
    env.read_config(["inputs/data"])
    env.add_remote(refused_url)
    assert "no answer from the registry" in one_error(env.fdp("pull", check=False), 1)


def test_how_long_to_wait_for_a_remote_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(app: Any) -> Any:
        def answer_late(environ: dict[str, Any], start_response: Any) -> Any:
            time.sleep(0.8)
            return app(environ, start_response)

        return answer_late

    server = CountingRegistry(tmp_path / "server", wrap=slow)
    try:
        env = Env(tmp_path)
        env.read_config(["inputs/data"])
        env.add_remote(server.api_url)
        monkeypatch.setenv("FDP_HTTP_TIMEOUT", "0.2")
        impatient = one_error(env.fdp("pull", check=False), 1)
        assert "no answer from the registry" in impatient and "timed out" in impatient
        monkeypatch.setenv("FDP_HTTP_TIMEOUT", "30")
        patient = env.fdp("pull", check=False)
        assert "timed out" not in patient.output and "no answer" not in patient.output
        assert server.requests, "the registry was never asked"
        monkeypatch.setenv("FDP_HTTP_TIMEOUT", "soon")
        line = one_error(env.fdp("pull", check=False), 1)
        assert line.endswith(
            "FDP_HTTP_TIMEOUT='soon': expected a number of seconds greater than 0, "
            "such as 30 or 120"
        )
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = Env(tmp_path)
    db = str(tmp_path / "shared" / "registry.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for action in ("serve", "start"):
            result = env.fdp("registry", action, "--db", db, "--port", port, check=False)
            assert f"cannot listen on 127.0.0.1:{port}" in one_error(result, 1), action


def test_a_wrong_token_is_one_line_and_exit_1(tmp_path: Path, registry_server) -> None:
    env = producer(tmp_path, outputs=1)
    env.fdp("run")
    token_file = tmp_path / "token"
    write_secret(token_file, "not-a-token")
    env.add_remote(registry_server().api_url, token_file)
    assert "(403)" in one_error(env.fdp("push", check=False), 1)


# -- conflicts: exit 3 ----------------------------------------------------------------------------


def test_a_conflict_exits_3_and_status_says_so_first(tmp_path: Path) -> None:
    remote = tmp_path / "shared"
    ours, theirs = (
        producer(tmp_path, outputs=1, name=name, args=repeat)
        for name, repeat in (("ours", "1"), ("theirs", "2"))
    )
    for env in (ours, theirs):
        env.fdp("run")
        env.add_remote(remote)
    theirs.fdp("push")
    status = ours.fdp("status", "--exit-code", check=False)
    assert status.returncode == 3 and "conflict" in status.stdout
    assert "different content" in one_error(ours.fdp("push", check=False), 3)
    assert ours.doit("push", check=False).returncode == 1  # doit's own codes stay doit's


# -- fdp status --exit-code -----------------------------------------------------------------------


def test_status_exit_code_says_whether_anything_would_run_or_fail(tmp_path: Path) -> None:
    env = producer(tmp_path, outputs=1)
    assert env.fdp("status", "--no-remote").returncode == 0  # without --exit-code: always 0
    assert env.fdp("status", "--no-remote", "--exit-code", check=False).returncode == 1
    env.fdp("run")
    assert env.fdp("status", "--no-remote", "--exit-code").returncode == 0
    env.read_config(["inputs/missing"], namespace="lab", name="reads.yaml")
    failing = env.fdp("status", "reads.yaml", "--exit-code", check=False)
    assert failing.returncode == 2 and "will-fail" in failing.stdout


# -- warnings, interruptions, task descriptions ---------------------------------------------------


def test_a_warning_says_so_once(tmp_path: Path) -> None:
    env = Env(tmp_path)  # not a git repository: runs warn that they record no commit
    script_config(env, "true")
    for result in (env.fdp("-v", "status"), env.fdp("run"), env.doit("force=1")):
        warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
        assert warnings and all(line.startswith("warning: ") for line in warnings), warnings
        assert "warning: warning" not in result.stderr.lower()


@pytest.mark.parametrize(
    "script",
    [
        "touch started && sleep 60",
        # a script that does not stop on Ctrl-C (as one that lost it between two commands)
        "trap '' INT; echo $$ > script.pid; touch started; sleep 30",
    ],
    ids=["stops", "ignores-ctrl-c"],
)
def test_ctrl_c_ends_fdp_with_130_and_one_line(tmp_path: Path, script: str) -> None:
    env = Env(tmp_path)
    script_config(env, script)
    proc = env.start_fdp(
        "run",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as from a terminal: a test worker may ignore SIGINT, and its children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (env.project / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: fdp and the script
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert err.splitlines()[-1] == "fdp: error: interrupted"
    pid_file = env.project / "script.pid"
    if pid_file.exists():  # the script fdp was running does not outlive it
        assert not running(int(pid_file.read_text())), "the interrupted script still runs"


def test_every_task_says_what_it_does(tmp_path: Path) -> None:
    env = producer(tmp_path, outputs=1)
    env.config(register_only("${{REPO_DIR}}/raw/", "seed.txt"), "register.yaml")
    env.fdp("run")
    listed = env.doit("list", "--all").stdout.splitlines()
    tasks = {line.split()[0]: line.split(maxsplit=1)[1:] for line in listed}
    assert {"register", "pull", "job", "push"} <= set(tasks)
    assert any(name.startswith("register:") for name in tasks)
    assert any(name.startswith("push:") for name in tasks)
    assert all(doc for doc in tasks.values()), listed
    job = [line for line in env.doit("list").stdout.splitlines() if line.startswith("job ")]
    assert job and job[0].split(maxsplit=1)[1:]  # created after the pulls, described before


# -- the README's set-up ------------------------------------------------------------------------


def test_the_readme_setup_commands_paste_into_one_shell() -> None:
    """Both run from the repository root and leave the shell there, so that the second works
    after the first; CI runs exactly the second."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        assert not re.search(r"(^|&&|;)\s*cd ", block), block  # a `cd` outside a subshell
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == blocks[1].strip()
    assert stat.S_IMODE((REPO / ".ci" / "run").stat().st_mode) & 0o100
