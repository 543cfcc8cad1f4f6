"""The command line (``actors.cli``): one parser, help everywhere, one program name, ``--version``,
the exit codes of docs/running.md, TLS mismatches in one line, a closed pipe without a traceback.

The commands run as real subprocesses (``python -m actors.main ...``) against real gRPC
servers on loopback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import cli
from actors.api import ApiServer, serve, verify_password
from actors.models import load_schema
from actors.store import Store
from tests.api.support import make_tls
from tests.main_support import environment, error_line, run_main

# -- the parser ------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subparser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_argument_and_command_has_help() -> None:
    missing = []
    parsers = list(_parsers(cli.build_parser()))
    assert len(parsers) == 15  # the top level, 9 commands, objects' 5 actions
    for parser in parsers:
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{parser.prog}: {action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                missing.extend(
                    f"{parser.prog} {choice.dest}" for choice in action._choices_actions if not choice.help
                )
    assert missing == []


def test_every_usage_line_names_one_program() -> None:
    for parser in _parsers(cli.build_parser()):
        assert parser.prog.startswith("python -m actors.main"), parser.prog
        assert parser.format_usage().startswith(f"usage: {parser.prog} "), parser.format_usage()
    names = {p.prog for p in _parsers(cli.build_parser())}
    assert {
        "python -m actors.main run",
        "python -m actors.main core",
        "python -m actors.main objects list",
    } <= names


def test_run_help_prints_the_usage_of_run() -> None:
    result = run_main(["run", "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m actors.main run [-h] [-C CONFIG] [--no-api]\n")
    top = run_main(["--help"])
    assert top.returncode == 0
    assert top.stdout.startswith("usage: python -m actors.main [-h] [--version] COMMAND ...")
    for command in ("run", "core", "objects", "models", "protos", "login", "hash-password", "status", "why"):
        assert f"\n    {command} " in top.stdout or f"\n    {command}\n" in top.stdout, command


def test_version_from_the_package_metadata() -> None:
    result = run_main(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"actors {importlib.metadata.version('actors')}\n"


def test_the_actors_command_is_the_same_program() -> None:
    """The ``actors`` console script (setup.cfg) shows the same name in its usage lines."""
    script = shutil.which("actors")
    if script is None:
        pytest.skip("the package is not installed with its console script")
    result = subprocess.run(
        [script, "run", "--help"], capture_output=True, text=True, timeout=60, env=environment()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m actors.main run ")


def test_a_subcommand_is_one_function_and_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """How a command like ``explain MODEL ID`` is added: a function that adds the subparser, one entry."""

    def why(args: argparse.Namespace, out: io.StringIO) -> int:
        out.write(f"{args.model} {args.id}\n")
        return 0

    def _why_command(sub: cli.Subparsers) -> None:
        p = sub.add_parser("explain", help="explain an object")
        p.add_argument("model", help="model name")
        p.add_argument("id", type=int, help="object id")
        p.set_defaults(handler=why)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, _why_command))
    out = io.StringIO()
    assert cli.main(["explain", "Service", "3"], stdout=out) == 0
    assert out.getvalue() == "Service 3\n"


# -- exit codes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pytest.importorskip("cryptography")
    return make_tls(tmp_path_factory.mktemp("tls"))


def _server(folder: Path, **options: object) -> Iterator[ApiServer]:
    store = Store(f"sqlite:///{folder}/core.db", load_schema([]))
    server = serve(store, address="127.0.0.1:0", **options)
    yield server
    server.stop(grace=0)
    store.close()


@pytest.fixture(scope="module")
def plain_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A core with no users (anonymous reads), plaintext."""
    yield from _server(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def tls_core(tmp_path_factory: pytest.TempPathFactory, tls_files: dict[str, str]) -> Iterator[ApiServer]:
    yield from _server(
        tmp_path_factory.mktemp("tls-core"), tls={"cert": tls_files["cert"], "key": tls_files["key"]}
    )


def test_exit_0_done() -> None:
    result = run_main(["hash-password", "--password", "s3cret"])
    assert result.returncode == 0, result.stderr
    assert verify_password("s3cret", result.stdout.strip())
    assert run_main(["core", "--help"]).returncode == 0


def test_exit_1_the_command_failed(plain_core: ApiServer) -> None:
    result = run_main(["objects", "get", "Service", "999", "--endpoint", plain_core.address])
    assert result.returncode == 1
    assert error_line(result.stderr) == "error: Service id 999 does not exist"
    result = run_main(["models", "--endpoint", "127.0.0.1:1", "--timeout", "0.5"])
    assert result.returncode == 1
    assert error_line(result.stderr).startswith("error: the core at 127.0.0.1:1 is unavailable")


def test_exit_2_bad_usage_or_config(plain_core: ApiServer, tmp_path: Path) -> None:
    result = run_main(["objects", "list", "Service", "--frobnicate"])
    assert result.returncode == 2 and "unrecognized arguments: --frobnicate" in result.stderr
    result = run_main(["objects", "list", "Gadget", "--endpoint", plain_core.address])
    assert result.returncode == 2 and error_line(result.stderr).startswith("error: unknown model 'Gadget'")
    result = run_main(["models", "--tls-ca", str(tmp_path / "missing.pem")])
    assert result.returncode == 2
    assert error_line(result.stderr) == f"error: --tls-ca {tmp_path / 'missing.pem'}: no such file"
    # run is the command when there is none, or options only
    for args in (["-C", str(tmp_path / "missing.yaml")], ["run", "-C", str(tmp_path / "missing.yaml")]):
        result = run_main(args)
        assert result.returncode == 2
        assert error_line(result.stderr) == f"error: {tmp_path / 'missing.yaml'}: file not found"
    result = run_main(["core", "--token-secret-file", str(tmp_path / "missing"), "--address", "127.0.0.1:0"])
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"actors core: cannot read --token-secret-file {tmp_path / 'missing'}: No such file or directory"
    )


# -- TLS -------------------------------------------------------------------------------


def test_tls_client_against_a_plaintext_core(plain_core: ApiServer, tls_files: dict[str, str]) -> None:
    result = run_main(["models", "--endpoint", plain_core.address, "--tls-ca", tls_files["ca"]])
    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: the core at {plain_core.address} serves plaintext, not TLS: "
        "leave out --tls-ca, or give the core api.tls (see docs/api.md#tls)"
    )


def test_plaintext_client_against_a_tls_core(tls_core: ApiServer, tls_files: dict[str, str]) -> None:
    result = run_main(["models", "--endpoint", tls_core.address, "--timeout", "1"])
    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: the core at {tls_core.address} serves TLS: connect with --tls-ca FILE "
        "(the CA certificate that signed its certificate)"
    )
    ok = run_main(["models", "--endpoint", tls_core.address, "--tls-ca", tls_files["ca"]])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("MODEL ")


def test_tls_client_with_another_ca(tls_core: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = make_tls(tmp_path_factory.mktemp("other-ca"))
    result = run_main(["models", "--endpoint", tls_core.address, "--tls-ca", other["ca"], "--timeout", "1"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: the core at {tls_core.address} serves TLS with a certificate that --tls-ca {other['ca']} "
        "does not trust: "
    )


# -- a closed pipe ---------------------------------------------------------------------


def test_output_closed_by_the_reader_ends_quietly(plain_core: ApiServer) -> None:
    command = [sys.executable, "-m", "actors.main", "protos", "--endpoint", plain_core.address]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written, as after `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert stderr == ""


def test_protos_piped_into_head(plain_core: ApiServer) -> None:
    pipeline = f"{sys.executable} -m actors.main protos --endpoint {plain_core.address} | head -1"
    result = subprocess.run(
        ["sh", "-c", pipeline], capture_output=True, text=True, timeout=60, env=environment()
    )
    assert result.returncode == 0
    assert result.stdout == "// ---- actors/api/v1/api.proto\n"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr and result.stderr == ""


def test_ctrl_c_during_a_client_command_is_one_line_and_status_130() -> None:
    """A core that accepts the connection and never answers: Ctrl-C ends the wait without a traceback."""
    import signal
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actors.main",
                "models",
                "--endpoint",
                f"127.0.0.1:{port}",
                "--timeout",
                "60",
            ],
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            conn, _ = listener.accept()  # the client is inside its call now
            with conn:
                proc.send_signal(signal.SIGINT)
                _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130
    assert "Traceback" not in stderr
    assert error_line(stderr) == "interrupted"


def test_after_ctrl_c_a_library_thread_failing_as_the_command_unwinds_prints_nothing() -> None:
    """The one-line ``interrupted`` stays alone: a thread that fails once the call is given up is quiet."""
    import threading

    from actors.cli import _quiet_threads_once_interrupted

    reported: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: reported.append(type(args.exc_value).__name__)
    try:
        given_up = threading.Event()

        def library_thread() -> None:
            given_up.wait(10)
            raise RuntimeError("channel closed under the call")

        thread = threading.Thread(target=library_thread)
        with pytest.raises(KeyboardInterrupt), _quiet_threads_once_interrupted():
            thread.start()
            raise KeyboardInterrupt
        given_up.set()
        thread.join(10)
        assert reported == []
        # Without an interrupt, a failing thread is reported as before.
        threading.excepthook = lambda args: reported.append(type(args.exc_value).__name__)
        with _quiet_threads_once_interrupted():
            loud = threading.Thread(target=lambda: 1 / 0)
            loud.start()
            loud.join(10)
        assert reported == ["ZeroDivisionError"]
    finally:
        threading.excepthook = previous
