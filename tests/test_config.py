"""Tests of actors.config: loading, validation errors, defaults, overrides, passwords."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from actors.config import (
    Config,
    ConfigError,
    Settings,
    config_schema,
    current_config,
    default_values,
    load_config,
    load_config_or_exit,
    set_default_config,
    use_config,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder that is also the working folder (messages name "config.yaml")."""
    monkeypatch.chdir(tmp_path)
    return Path.cwd()


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    file = folder / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(textwrap.dedent(text), encoding="utf-8")
    return file


def exit_message(capsys: pytest.CaptureFixture[str], path: str = "config.yaml", env: Any = None) -> str:
    """Run load_config_or_exit; check status 2 and one stderr line; return the message."""
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(path, env={} if env is None else env)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("error: ")
    return captured.err[len("error: ") : -1]


# --- error cases: exit status 2 and a one-line message -----------------------------------------


ERROR_CASES = [
    pytest.param(
        "name: x\nevent_bus:\n  endpoint: 5\n",
        'config.yaml: event_bus.endpoint: expected a string like "host:port" or a list of them, got 5',
        "event_bus.endpoint",
        id="wrong-type",
    ),
    pytest.param(
        "name: x\nevent_bus:\n  endpoint: kafka\n  endpiont: kafka:9092\n",
        'config.yaml: event_bus.endpiont: unknown key (did you mean "endpoint"?); '
        "allowed keys: commit_interval, connect_timeout, consumer, dead_letter_timeout, dead_letter_topic, "
        "endpoint, health_grace, kind, max_poll_records, max_retries, metadata_max_age, poll_timeout, "
        "producer, reconnect_backoff, reconnect_backoff_max, retry_backoff, retry_backoff_max, stall_timeout",
        "event_bus.endpiont",
        id="unknown-nested-key",
    ),
    pytest.param(
        "core_version: '4.0'\n",
        'config.yaml: name: missing required key; expected a name made of letters, digits, ".", "_" or "-"'
        " (the synchronizer name, also the Kafka consumer group id)",
        "name",
        id="missing-required",
    ),
    pytest.param(
        "- name: x\n",
        "config.yaml: expected a mapping of configuration keys at the top level, got a list of 1 item",
        None,
        id="top-level-list",
    ),
    pytest.param(
        "",
        "config.yaml: expected a mapping of configuration keys at the top level, got an empty document",
        None,
        id="empty-file",
    ),
    pytest.param(
        "name: x\nruntime:\n  resync_period: 0\n",
        "config.yaml: runtime.resync_period: expected a number of seconds > 0, got 0",
        "runtime.resync_period",
        id="minimum",
    ),
    pytest.param(
        "name: x\nruntime:\n  max_restarts: 2.5\n",
        "config.yaml: runtime.max_restarts: expected an integer >= 0, got 2.5",
        "runtime.max_restarts",
        id="integer",
    ),
    pytest.param(
        "name: x\nbackoff_disabled: maybe\n",
        'config.yaml: backoff_disabled: expected true or false, got "maybe"',
        "backoff_disabled",
        id="boolean",
    ),
    pytest.param(
        "name: x\naccessor:\n  kind: grpc\n",
        'config.yaml: accessor.kind: expected "local" or "grpcapi", got "grpc"',
        "accessor.kind",
        id="enum",
    ),
    pytest.param(
        "name: x\naccessor:\n  kind: grpcapi\n",
        'config.yaml: accessor.endpoint: missing required key (needed when kind is "grpcapi");'
        ' expected a string like "host:port"',
        "accessor.endpoint",
        id="conditional-required",
    ),
    pytest.param(
        "name: x\napi:\n  address: localhost\n",
        'config.yaml: api.address: expected a string like "host:port", got "localhost"',
        "api.address",
        id="address-without-port",
    ),
    pytest.param(
        "name: x\napi:\n  users:\n    - {username: a, role: admin}\n",
        "config.yaml: api.users.0: expected a mapping with username, role and exactly one of password or"
        " password_hash, got a mapping with the keys username, role",
        "api.users.0",
        id="user-without-password",
    ),
    pytest.param(
        "name: x\napi:\n  users:\n    - {username: a, role: root, password: p}\n",
        'config.yaml: api.users.0.role: expected "admin", "synchronizer" or "readonly", got "root"',
        "api.users.0.role",
        id="user-role",
    ),
    pytest.param(
        "name: x\napi:\n  users:\n    - {username: a, role: admin, password: p}\n"
        "    - {username: a, role: readonly, password: q}\n",
        'config.yaml: api.users.1.username: the user name "a" is used twice',
        "api.users.1.username",
        id="user-twice",
    ),
    pytest.param(
        "name: x\nevent_bus:\n  endpoint: ['k1:9092', 9092]\n",
        'config.yaml: event_bus.endpoint.1: expected a string like "host:port", got 9092',
        "event_bus.endpoint.1",
        id="endpoint-list-item",
    ),
    pytest.param(
        "name: x\ndependency_graph:\n  Slice: [[Site, site, slices, extra]]\n",
        "config.yaml: dependency_graph.Slice.0: expected a list [OtherModel, src_accessor, dst_accessor]"
        " or a model name, got a list of 4 items",
        "dependency_graph.Slice.0",
        id="inline-dependency-graph",
    ),
    pytest.param(
        "name: x\nlogging:\n  handlers: {}\n",
        "config.yaml: logging.version: missing required key; expected 1 (the version of the logging"
        " dictConfig schema)",
        "logging.version",
        id="logging-without-version",
    ),
    pytest.param(
        "name: x\nstore:\n  url: not a url\n",
        'config.yaml: store.url: expected a SQLAlchemy database URL such as "sqlite:///data/actors.db",'
        ' got "not a url"',
        "store.url",
        id="store-url",
    ),
    pytest.param(
        "name: x\naccessor:\n  username: u\n  password: 12345\n",
        'config.yaml: accessor.password: expected a password string, or "@file" to read it from a file,'
        " got a number (value hidden)",
        "accessor.password",
        id="password-not-echoed",
    ),
]


@pytest.mark.parametrize(("text", "message", "key"), ERROR_CASES)
def test_invalid_configuration_exits_2_with_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], text: str, message: str, key: str | None
) -> None:
    write(workdir, text)
    assert exit_message(capsys) == message
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml", env={})
    assert str(info.value) == message
    assert info.value.key == key
    assert info.value.path == "config.yaml"
    assert info.value.expected


def test_unknown_top_level_key_lists_the_allowed_keys(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(workdir, "name: x\nnmae: y\n")
    # The original framework's keys that do nothing here are accepted but not offered.
    allowed = sorted(k for k, sub in config_schema()["properties"].items() if "x-original" not in sub)
    assert "sys_dir" not in allowed and "steps_dir" in allowed
    assert exit_message(capsys) == (
        f'config.yaml: nmae: unknown key (did you mean "name"?); allowed keys: {", ".join(allowed)}'
    )


def test_missing_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_message(capsys, "nope.yaml") == "nope.yaml: file not found"


def test_unreadable_file_a_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "conf.yaml").mkdir()
    assert exit_message(capsys, "conf.yaml") == "conf.yaml: cannot read: it is a folder"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_permissions(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(workdir, "name: x\n")
    file.chmod(0)
    assert exit_message(capsys) == "config.yaml: cannot read: Permission denied"


def test_unreadable_file_not_utf8(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "config.yaml").write_bytes(b"name: \xff\n")
    assert exit_message(capsys) == "config.yaml: cannot read: not UTF-8 text (byte 0xff at offset 6)"


def test_yaml_syntax_error_has_line_and_column(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\nevent_bus:\n  endpoint: a: b\n")
    assert exit_message(capsys) == "config.yaml:3:14: YAML syntax error: mapping values are not allowed here"
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml", env={})
    assert (info.value.line, info.value.column, info.value.key) == (3, 14, None)


def test_yaml_duplicate_key_is_an_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\nsteps_dir: a\nname: y\n")
    assert exit_message(capsys) == 'config.yaml:3:1: YAML syntax error: duplicate key "name"'


def test_missing_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\nsteps_dir: steps\n")
    assert exit_message(capsys) == f"config.yaml: steps_dir: folder not found: {workdir / 'steps'}"


def test_folder_that_is_a_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "", name="models")
    write(workdir, "name: x\nmodels_dir: models\n")
    assert (
        exit_message(capsys)
        == f"config.yaml: models_dir: expected a folder, got a file: {workdir / 'models'}"
    )


def test_missing_password_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\naccessor:\n  username: u\n  password: '@secret/pw'\n")
    assert exit_message(capsys) == (
        f"config.yaml: accessor.password: password file not found: {workdir / 'secret' / 'pw'}"
    )


def test_missing_dependency_graph_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\ndependency_graph: model-deps\n")
    assert exit_message(capsys) == f"config.yaml: dependency_graph: file not found: {workdir / 'model-deps'}"


def test_invalid_dependency_graph_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, '{"Slice": [["Site", "site", 3]]}', name="deps.json")
    write(workdir, "name: x\ndependency_graph: deps.json\n")
    assert exit_message(capsys) == (
        "config.yaml: dependency_graph.Slice.0.2: expected an accessor name or null, got 3"
        f" (in {workdir / 'deps.json'})"
    )
    write(workdir, "{", name="deps.json")
    message = exit_message(capsys)
    assert message.startswith(f"config.yaml: dependency_graph: cannot parse {workdir / 'deps.json'}: ")


def test_missing_tls_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "c", name="cert.pem")
    write(workdir, "name: x\napi:\n  tls: {cert: cert.pem, key: key.pem}\n")
    assert exit_message(capsys) == f"config.yaml: api.tls.key: file not found: {workdir / 'key.pem'}"


def test_from_dict_errors_have_no_path() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"name": "x", "event_bus": {"endpoint": 5}})
    assert (
        str(info.value) == 'event_bus.endpoint: expected a string like "host:port" or a list of them, got 5'
    )
    assert info.value.path is None
    with pytest.raises(ConfigError, match="at the top level, got a list"):
        Config.from_dict([1])  # type: ignore[arg-type]


def test_config_error_pickles() -> None:
    error = ConfigError("expected x, got y", path="c.yaml", key="a.b", expected="x", line=1, column=2)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.key, copy.expected, copy.line) == (str(error), "a.b", "x", 1)


def test_exit_in_a_subprocess_prints_no_traceback(workdir: Path) -> None:
    write(workdir, "name: x\nevent_bus:\n  endpoint: 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORS_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]
    )
    code = "import sys; from actors.config import load_config_or_exit; load_config_or_exit(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, "config.yaml"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: config.yaml: event_bus.endpoint: "
        'expected a string like "host:port" or a list of them, got 5\n'
    )


# --- a valid file: defaults, paths, get -------------------------------------------------------


def test_minimal_file_gets_every_default(workdir: Path) -> None:
    write(workdir, "name: mysync\n")
    cfg = load_config("config.yaml", env={})
    assert cfg.path == workdir / "config.yaml"
    assert cfg.base_dir == workdir
    assert cfg.name == "mysync"
    assert cfg.get("backoff_disabled") is False
    assert cfg.get("required_models") == []
    assert cfg.get("accessor") == {"kind": "local", "connect_timeout": 30}
    assert cfg.get("event_bus") == {
        "kind": "kafka",
        "max_retries": 3,
        "retry_backoff": 0.5,
        "dead_letter_topic": "mysync.dead-letters",
        # The defaults the event actor used to fill in itself, now in the model.
        "retry_backoff_max": 30.0,
        "poll_timeout": 0.1,
        "commit_interval": 1.0,
        "metadata_max_age": 5.0,
        "connect_timeout": 2.0,
        "reconnect_backoff": 0.5,
        "reconnect_backoff_max": 30.0,
        "health_grace": 2.0,
        "dead_letter_timeout": 10.0,
        "stall_timeout": 60.0,
        "max_poll_records": 500,
        "consumer": {},
        "producer": {},
    }
    assert cfg.get("http") == {"enabled": True, "address": "127.0.0.1:8080"}
    assert cfg.get("runtime") == {
        "resync_period": 30,
        "step_deadline": 600,
        "restart_backoff": 1,
        "max_restarts": 5,
        "restart_window": 60,
        "pull_period": 5,
        "shutdown_timeout": 10,
        "isolation": "thread",
        "step_concurrency": 1,
        "steps": {},
    }
    assert cfg.get("api") == {
        "enabled": True,
        "address": "127.0.0.1:50051",
        "users": [],
        "max_message_bytes": 4194304,
        "max_concurrent_calls": 1,
        "backlog_limit": 1000,
        "backlog_wait": 1.0,
        "sync_share": 0.5,
    }
    assert cfg.get("data_dir") == str(workdir / "data")
    assert not (workdir / "data").exists()  # created by whoever uses it
    assert cfg.get("store.url") == f"sqlite:///{workdir / 'data' / 'actors.db'}"
    assert cfg.get("logging.root.level") == "INFO"
    assert cfg.get("steps_dir") is None
    assert cfg.get("core_version") is None


def test_partial_mapping_keeps_the_other_defaults(workdir: Path) -> None:
    write(workdir, "name: x\nruntime:\n  pull_period: 0.25\napi:\n  enabled: false\n")
    cfg = load_config("config.yaml", env={})
    assert cfg.get("runtime.pull_period") == 0.25
    assert cfg.get("runtime.resync_period") == 30
    assert cfg.get("api") == {
        "enabled": False,
        "address": "127.0.0.1:50051",
        "users": [],
        "max_message_bytes": 4194304,
        "max_concurrent_calls": 1,
        "backlog_limit": 1000,
        "backlog_wait": 1.0,
        "sync_share": 0.5,
    }


def test_logging_replaces_the_default_whole(workdir: Path) -> None:
    write(workdir, "name: x\nlogging:\n  version: 1\n  root: {level: DEBUG}\n")
    cfg = load_config("config.yaml", env={})
    assert cfg.get("logging") == {"version": 1, "root": {"level": "DEBUG"}}


def test_logging_is_free_form(workdir: Path) -> None:
    write(
        workdir,
        """\
        name: x
        logging:
          version: 1
          anything_goes: {custom: [1, 2]}
          loggers:
            actors.runtime: {level: DEBUG}
        """,
    )
    cfg = load_config("config.yaml", env={})
    assert cfg.get("logging.anything_goes.custom") == [1, 2]
    assert cfg.get("logging.loggers.actors.runtime.level") == "DEBUG"


def test_relative_paths_are_resolved_against_the_config_folder(workdir: Path) -> None:
    conf = workdir / "conf"
    for folder in ("models", "steps", "pull", "events", "policies"):
        (conf / folder).mkdir(parents=True)
    (workdir / "abs_steps").mkdir()
    write(conf, '{"Slice": [["Site", "site", "slices"]]}', name="deps.json")
    write(
        conf,
        f"""\
        name: x
        models_dir: models
        steps_dir: {workdir / "abs_steps"}
        pull_steps_dir: ./pull
        event_steps_dir: events/
        model_policies_dir: ../conf/policies
        dependency_graph: deps.json
        data_dir: var
        store:
          url: sqlite:///db/store.db
        """,
    )
    cfg = load_config(conf / "config.yaml", env={})
    assert cfg.base_dir == conf
    assert cfg.get("models_dir") == str(conf / "models")
    assert cfg.get("steps_dir") == str(workdir / "abs_steps")
    assert cfg.get("pull_steps_dir") == str(conf / "pull")
    assert cfg.get("event_steps_dir") == str(conf / "events")
    assert cfg.get("model_policies_dir") == str(conf / "policies")
    assert cfg.get("dependency_graph") == str(conf / "deps.json")
    assert cfg.dependency_graph == {"Slice": [["Site", "site", "slices"]]}
    assert cfg.get("data_dir") == str(conf / "var")
    assert cfg.get("store.url") == f"sqlite:///{conf / 'db' / 'store.db'}"


def test_store_urls_that_are_not_relative_sqlite_files_are_kept(workdir: Path) -> None:
    for url in (
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg://u:p@db:5432/xos",
        "sqlite:////a/b.db",
    ):
        cfg = Config.from_dict({"name": "x", "store": {"url": url}})
        assert cfg.get("store.url") == url


def test_inline_dependency_graph(workdir: Path) -> None:
    write(workdir, "name: x\ndependency_graph:\n  Slice: [[Site, site, slices]]\n")
    cfg = load_config("config.yaml", env={})
    assert cfg.get("dependency_graph") == {"Slice": [["Site", "site", "slices"]]}
    assert cfg.dependency_graph == {"Slice": [["Site", "site", "slices"]]}
    assert Config.from_dict({"name": "x"}).dependency_graph == {}


def test_endpoint_forms(workdir: Path) -> None:
    good = (
        "cord-kafka-kafka",
        "kafka:9092",
        "10.0.0.1:9092",
        "[::1]:9092",
        ["a:1", "b:2"],
        "a:1,b:2",
        "a, [::1]",
    )
    for endpoint in good:
        cfg = Config.from_dict({"name": "x", "event_bus": {"endpoint": endpoint}})
        assert cfg.get("event_bus.endpoint") == endpoint
    bad: object
    for bad in ("a b:1", "kafka:99999", "kafka:", [], "a:1,", ",a:1", "a:1,,b:2", ["a:1,b:99999"]):
        with pytest.raises(ConfigError, match=r"^event_bus\.endpoint"):
            Config.from_dict({"name": "x", "event_bus": {"endpoint": bad}})


def test_full_example_from_the_docs_is_valid(workdir: Path) -> None:
    """The complete example in docs/configuration.md loads (with its folders and files made)."""
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"<!-- full-example -->\s*(?:<!--.*?-->\s*)?```yaml\n(.*?)```", text, re.S)
    assert example, "docs/configuration.md lost its full example"
    for folder in ("models", "steps", "pull_steps", "event_steps", "model_policies"):
        (workdir / folder).mkdir()
    for file in (
        "model-deps.json",
        "secrets/core-password",
        "tls/server.crt",
        "tls/server.key",
        "tls/ca.crt",
    ):
        write(workdir, "{}" if file.endswith(".json") else "pw\n", name=file)
    write(workdir, example.group(1))
    cfg = load_config("config.yaml", env={})
    assert cfg.get("accessor.password") == "pw"
    assert cfg.name == "my-synchronizer"


def test_an_accessor_with_an_endpoint_and_no_kind_is_grpcapi(workdir: Path) -> None:
    # simpleexampleservice's config: the original's default kind was grpcapi.
    write(workdir, "name: x\naccessor:\n  username: u\n  password: pw\n  endpoint: xos-core:50051\n")
    assert load_config("config.yaml", env={}).get("accessor.kind") == "grpcapi"
    write(workdir, "name: x\naccessor:\n  kind: local\n  endpoint: xos-core:50051\n")
    assert load_config("config.yaml", env={}).get("accessor.kind") == "local", "an explicit kind wins"
    write(workdir, "name: x\naccessor:\n  username: u\n  password: pw\n")
    assert load_config("config.yaml", env={}).get("accessor.kind") == "local", "no endpoint: the store here"
    write(workdir, "name: x\n")
    env = {"ACTORS_ACCESSOR__ENDPOINT": "core:50051"}
    assert load_config("config.yaml", env=env).get("accessor.kind") == "grpcapi"


@pytest.mark.parametrize(
    ("accessor", "message"),
    [
        (  # with an endpoint and no kind (so grpcapi), the user name is still required with a password
            {"endpoint": "core:50051", "password": "pw"},
            "accessor.username: missing required key (needed with password); expected a user name",
        ),
        (
            {"kind": "local", "password": "pw"},
            "accessor.username: missing required key (needed with password); expected a user name",
        ),
        (  # the endpoint is named first when both are missing
            {"kind": "grpcapi", "password": "pw"},
            'accessor.endpoint: missing required key (needed when kind is "grpcapi");'
            ' expected a string like "host:port"',
        ),
    ],
)
def test_accessor_keys_required_together(accessor: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"name": "x", "accessor": accessor})
    assert str(info.value) == message


def test_get_with_dots_defaults_and_copies() -> None:
    cfg = Config.from_dict(
        {
            "name": "x",
            "required_models": ["A", "B"],
            "api": {"users": [{"username": "u", "password": "p", "role": "admin"}]},
        }
    )
    assert cfg.get("event_bus.max_retries") == 3
    assert cfg.get("api.users.0.username") == "u"
    assert cfg.get("api.users.1.username") is None
    assert cfg.get("nothing.here", default=7) == 7
    assert cfg.get("name.deeper", "d") == "d"
    assert "runtime.pull_period" in cfg
    assert "runtime.nope" not in cfg
    cfg.get("required_models").append("C")
    cfg.as_dict()["runtime"]["pull_period"] = 99
    assert cfg.get("required_models") == ["A", "B"]
    assert cfg.get("runtime.pull_period") == 5
    assert cfg == Config.from_dict(cfg.as_dict())


def test_from_dict_resolves_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    cfg = Config.from_dict({"name": "x", "steps_dir": "steps"}, base_dir=tmp_path)
    assert cfg.path is None
    assert cfg.get("steps_dir") == str(tmp_path / "steps")
    with pytest.raises(ConfigError, match="steps_dir: folder not found"):
        Config.from_dict({"name": "x", "steps_dir": "steps"}, base_dir=tmp_path / "elsewhere")


def test_defaults_are_valid() -> None:
    defaults = default_values()
    cfg = Config.from_dict({"name": "x", **defaults})
    assert cfg.get("runtime") == defaults["runtime"]


# --- environment overrides --------------------------------------------------------------------


def test_env_overrides_nested_keys_with_yaml_scalars(workdir: Path) -> None:
    write(workdir, "name: x\nevent_bus:\n  endpoint: kafka:9092\n")
    env = {
        "ACTORS_EVENT_BUS__ENDPOINT": "host:9092",
        "ACTORS_BACKOFF_DISABLED": "true",
        "ACTORS_RUNTIME__MAX_RESTARTS": "7",
        "ACTORS_RUNTIME__PULL_PERIOD": "0.5",
        "ACTORS_REQUIRED_MODELS": "[Slice, Site]",
        "ACTORS_CORE_VERSION": "4.0",
        "ACTORS_ACCESSOR__USERNAME": "admin",
        "ACTORS_ACCESSOR__PASSWORD": "12345",
        "ACTORS_CONFIG": "/elsewhere/config.yaml",
        # The development tools' own settings are not config keys.
        "ACTORS_KAFKA_CACHE": "/root/.cache/actors-kafka",
        "ACTORS_PG_USER": "postgres",
        "ACTORS_TEST_POSTGRES_URL": "postgresql+psycopg://x@127.0.0.1:1/y",
        "OTHER_VARIABLE": "ignored",
    }
    cfg = load_config("config.yaml", env=env)
    assert cfg.get("event_bus.endpoint") == "host:9092"
    assert cfg.get("event_bus.kind") == "kafka"
    assert cfg.get("backoff_disabled") is True
    assert cfg.get("runtime.max_restarts") == 7
    assert cfg.get("runtime.pull_period") == 0.5
    assert cfg.get("runtime.resync_period") == 30
    assert cfg.get("required_models") == ["Slice", "Site"]
    assert cfg.get("core_version") == "4.0"  # kept as text: the key only takes strings
    assert cfg.get("accessor.password") == "12345"
    assert cfg.path == workdir / "config.yaml"


def test_env_overrides_are_applied_before_validation(workdir: Path) -> None:
    write(workdir, "core_version: '1'\n")
    cfg = load_config("config.yaml", env={"ACTORS_NAME": "from-env"})
    assert cfg.name == "from-env"
    assert cfg.get("event_bus.dead_letter_topic") == "from-env.dead-letters"


def test_load_config_reads_os_environ_by_default(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("ACTORS_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("ACTORS_RUNTIME__RESYNC_PERIOD", "12")
    write(workdir, "name: x\n")
    assert load_config("config.yaml").get("runtime.resync_period") == 12


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ACTORS_RUNTIME__PULL_PERIOD": "soon"},
            'config.yaml: runtime.pull_period: expected a number of seconds > 0, got "soon"'
            " (set by the environment variable ACTORS_RUNTIME__PULL_PERIOD)",
        ),
        (
            {"ACTORS_NAEM": "x"},
            'config.yaml: naem: unknown key (did you mean "name"?); allowed keys: '
            + ", ".join(sorted(k for k, v in config_schema()["properties"].items() if "x-original" not in v))
            + " (set by the environment variable ACTORS_NAEM)",
        ),
        (
            {"ACTORS_NAME__FIRST": "x"},
            "config.yaml: name: expected a mapping to apply the environment variable ACTORS_NAME__FIRST,"
            ' got "x"',
        ),
        (
            {"ACTORS_RUNTIME____X": "1"},
            "config.yaml: environment variable ACTORS_RUNTIME____X: malformed name; expected ACTORS_<KEY>"
            " with __ between nesting levels, such as ACTORS_EVENT_BUS__ENDPOINT",
        ),
        (
            {"ACTORS_REQUIRED_MODELS": "[a, b"},
            "config.yaml: required_models: cannot parse the value of the environment variable"
            " ACTORS_REQUIRED_MODELS: expected ',' or ']', but got '<stream end>'",
        ),
    ],
)
def test_env_override_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str], message: str
) -> None:
    write(workdir, "name: x\n")
    assert exit_message(capsys, env=env) == message


@settings(deadline=None, max_examples=50)
@given(
    period=st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    restarts=st.integers(min_value=0, max_value=10**6),
)
def test_env_numbers_round_trip(period: float, restarts: int) -> None:
    env = {"ACTORS_RUNTIME__PULL_PERIOD": repr(period), "ACTORS_RUNTIME__MAX_RESTARTS": str(restarts)}
    with tempfile.TemporaryDirectory() as folder:
        cfg = load_config(write(Path(folder), "name: x\n"), env=env)
    assert cfg.get("runtime.pull_period") == period
    assert cfg.get("runtime.max_restarts") == restarts
    assert cfg.get("runtime.resync_period") == 30


# --- @file passwords ---------------------------------------------------------------------------


def test_password_from_file_relative_to_config_folder(workdir: Path) -> None:
    conf = workdir / "conf"
    write(conf, "s3cret\n", name="secrets/core")
    write(conf, "hash-me\r\n", name="api-pw")
    write(
        conf,
        """\
        name: x
        accessor:
          kind: grpcapi
          endpoint: core:50051
          username: admin@opencord.org
          password: "@secrets/core"
        api:
          users:
            - {username: sync, role: synchronizer, password: "@api-pw"}
            - {username: lit, role: readonly, password: "@@literal"}
            - {username: h, role: admin, password_hash: "@not-a-file"}
        """,
    )
    cfg = load_config(conf / "config.yaml", env={})
    assert cfg.get("accessor.password") == "s3cret"
    assert cfg.get("api.users.0.password") == "hash-me"
    assert cfg.get("api.users.1.password") == "@literal"
    assert cfg.get("api.users.2.password_hash") == "@not-a-file"


def test_password_file_from_env_override(workdir: Path) -> None:
    write(workdir, "token\n", name="pw")
    write(workdir, "name: x\naccessor:\n  username: u\n")
    cfg = load_config("config.yaml", env={"ACTORS_ACCESSOR__PASSWORD": "@pw"})
    assert cfg.get("accessor.password") == "token"


def test_password_file_error_in_a_list(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\napi:\n  users:\n    - {username: a, role: admin, password: '@'}\n")
    assert exit_message(capsys) == 'config.yaml: api.users.0.password: expected a file name after "@"'


# --- the current configuration -----------------------------------------------------------------


def test_current_config_defaults_then_default_then_context() -> None:
    set_default_config(None)
    builtin = current_config()
    assert builtin.name == "actors"
    assert builtin.get("logging.root.level") == "INFO"
    assert current_config() is builtin

    process_wide = Config.from_dict({"name": "process"})
    inner = Config.from_dict({"name": "inner"})
    set_default_config(process_wide)
    try:
        assert current_config() is process_wide
        with use_config(inner) as used:
            assert used is inner
            assert current_config() is inner
            with use_config(builtin):
                assert current_config() is builtin
            assert current_config() is inner
            seen: list[Config] = []
            thread = threading.Thread(target=lambda: seen.append(current_config()))
            thread.start()
            thread.join()
            assert seen == [process_wide]  # other threads use the process-wide default
        assert current_config() is process_wide
    finally:
        set_default_config(None)
    assert current_config() is builtin


# --- keys of the original framework ------------------------------------------------------------

#: Every key the original's two config schemas allow (xosconfig synchronizer-config-schema.yaml and
#: xos-config-schema.yaml), with a value of its original type: none of them refuses the file.
ORIGINAL_FILE = """\
name: simpleexampleservice
core_version: ">=2.2.1"
desired_state: load
xos_dir: /opt/xos
logging:
  version: 1
wrappers: [xosapi.convenience.serviceinstance]
blueprints:
  - name: default
    graph: {}
    networks: [{name: management, permit_all_slices: true}]
dependency_graph: {}
link_graph: /opt/xos/link-graph.json
steps_dir: steps
event_steps_dir: steps
pull_steps_dir: steps
sys_dir: /opt/xos/synchronizers/simpleexampleservice/sys
models_dir: steps
accessor:
  endpoint: xos-core:50051
  username: admin@opencord.org
  password: letmein
  kind: grpcapi
kafka_bootstrap_servers: [cord-kafka:9092]
event_bus:
  endpoint: cord-kafka:9092
  kind: kafka
required_models: [SimpleExampleService]
keep_temp_files: false
proxy_ssh: {enabled: false, key: /opt/cord_profile/node_key, user: root}
model_policies_dir: steps
error_map_path: /opt/xos/error_map.txt
feefie: {client_id: c, user_id: u}
node_key: /opt/cord_profile/node_key
config_dir: /opt/xos/config
backoff_disabled: true
images_directory: /opt/xos/images
nova: {enabled: false, ca_ssl_cert: /c, default_flavor: m1.small, default_security_group: default}
database: {name: xos, username: postgres, password: password}
"""

IGNORED = [
    "desired_state", "xos_dir", "wrappers", "blueprints", "link_graph", "sys_dir",
    "kafka_bootstrap_servers", "keep_temp_files", "proxy_ssh", "error_map_path", "feefie",
    "node_key", "config_dir", "images_directory", "nova", "database",
]  # fmt: skip


def test_original_keys_are_accepted_with_a_warning_naming_each(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (workdir / "steps").mkdir()
    write(workdir, ORIGINAL_FILE)
    with caplog.at_level("WARNING", logger="actors.config"):
        cfg = load_config("config.yaml", env={})
    warned = [r.getMessage() for r in caplog.records if r.name == "actors.config"]
    assert len(warned) == len(IGNORED)
    for key, message in zip(sorted(IGNORED), sorted(warned), strict=True):
        assert message.startswith(
            f"config.yaml: {key}: a key of the original framework, accepted and ignored: "
        )
    assert all("\n" not in m for m in warned)
    # The keys the original shares with us keep their meaning; the others are kept as given.
    assert cfg.get("accessor.endpoint") == "xos-core:50051" and cfg.get("backoff_disabled") is True
    assert cfg.get("sys_dir") == "/opt/xos/synchronizers/simpleexampleservice/sys"
    assert cfg.get("kafka_bootstrap_servers") == ["cord-kafka:9092"]
    assert cfg.get("database.name") == "xos"


def test_original_keys_keep_their_original_types(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, "name: x\nsys_dir: 5\n")
    assert exit_message(capsys) == "config.yaml: sys_dir: expected a folder path, got 5"
    write(workdir, "name: x\nkafka_bootstrap_servers: kafka:9092\n")
    assert exit_message(capsys) == (
        'config.yaml: kafka_bootstrap_servers: expected a list of strings like "host:port", got "kafka:9092"'
    )


def test_a_file_without_original_keys_warns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="actors.config"):
        Config.from_dict({"name": "x"})
    assert not [r for r in caplog.records if r.name == "actors.config"]


# --- docs --------------------------------------------------------------------------------------


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of the settings model, dotted (``api.users[].role``, ``runtime.steps.<StepName>.x``)."""
    keys = []
    for key, info in model.model_fields.items():
        keys.append(prefix + key)
        annotation = info.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        for arg in typing.get_args(annotation) if union else (annotation,):  # X, or X of "X | None"
            inner = typing.get_args(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys.extend(_keys(arg, f"{prefix}{key}."))
            elif (
                typing.get_origin(arg) is list
                and isinstance(inner[0], type)
                and issubclass(inner[0], BaseModel)
            ):
                keys.extend(_keys(inner[0], f"{prefix}{key}[]."))
            elif (
                typing.get_origin(arg) is dict
                and isinstance(inner[1], type)
                and issubclass(inner[1], BaseModel)
            ):
                keys.extend(_keys(inner[1], f"{prefix}{key}.<StepName>."))
    return keys


def test_every_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    keys = _keys(Settings)
    assert (
        "runtime.steps.<StepName>.rate_limit" in keys
        and "api.users[].role" in keys
        and "http.address" in keys
    )
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_the_json_schema_is_generated_from_the_model() -> None:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["runtime"]["default"]["resync_period"] == 30
    # Every field says what it does.
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_every_kafka_python_option_is_accepted() -> None:
    import kafka

    owned = {"group_id", "enable_auto_commit", "bootstrap_servers", "key_deserializer", "value_deserializer"}
    consumer = {name: None for name in kafka.KafkaConsumer.DEFAULT_CONFIG if name not in owned}
    producer = dict.fromkeys(kafka.KafkaProducer.DEFAULT_CONFIG)
    cfg = Config.from_dict({"name": "x", "event_bus": {"consumer": consumer, "producer": producer}})
    assert len(cfg.settings.event_bus.consumer) > 50 and "linger_ms" in cfg.settings.event_bus.producer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nevent_bus:\n  consumer: {sesion_timeout_ms: 1}\n",
            "config.yaml: event_bus.consumer.sesion_timeout_ms: not a kafka-python KafkaConsumer option",
        ),
        (
            "name: x\nevent_bus:\n  consumer: {enable_auto_commit: true}\n",
            "config.yaml: event_bus.consumer.enable_auto_commit: set by the framework"
            " (offsets are committed by hand, after process_event)",
        ),
        (
            "name: x\nevent_bus:\n  producer: {lingr_ms: 1}\n",
            "config.yaml: event_bus.producer.lingr_ms: not a kafka-python KafkaProducer option",
        ),
        (
            "name: x\nevent_bus:\n  stall_timeout: soon\n",
            'config.yaml: event_bus.stall_timeout: expected a number of seconds > 0, got "soon"',
        ),
        (
            "name: x\nhttp:\n  address: localhost\n",
            'config.yaml: http.address: expected a string like "host:port", got "localhost"',
        ),
        (
            "name: x\nhttp:\n  enabled: 1\n",
            "config.yaml: http.enabled: expected true or false, got 1",
        ),
        (
            "name: x\nruntime:\n  steps: {SyncA: {concurrency: 0}}\n",
            "config.yaml: runtime.steps.SyncA.concurrency: expected an integer >= 1, got 0",
        ),
        (
            "name: x\nruntime:\n  steps: {SyncA: {rate_limt: 1}}\n",
            'config.yaml: runtime.steps.SyncA.rate_limt: unknown key (did you mean "rate_limit"?);'
            " allowed keys: concurrency, rate_burst, rate_limit",
        ),
        (
            "name: x\napi:\n  anonymous_read: yes please\n",
            'config.yaml: api.anonymous_read: expected true or false, got "yes please"',
        ),
        (
            "name: x\naccessor:\n  connect_timeout: -1\n",
            "config.yaml: accessor.connect_timeout: expected a number of seconds > 0, got -1",
        ),
        (
            "name: x\nrequired_models: [A, 5]\n",
            "config.yaml: required_models.1: expected a model name, got 5",
        ),
        (
            "name: x\nblueprints: [1]\n",
            "config.yaml: blueprints.0: expected a mapping, got 1",
        ),
        (  # a misspelt key is named before the key it leaves missing
            "name: x\napi:\n  tls: {cert: c.pem, kye: k.pem}\n",
            'config.yaml: api.tls.kye: unknown key (did you mean "key"?); allowed keys: cert, key',
        ),
        (  # a section given no mapping: its own wording, or the wording of the key that holds it
            "name: x\nruntime:\n  steps: {SyncA: 1}\n",
            "config.yaml: runtime.steps.SyncA: expected a mapping with the keys concurrency, rate_limit,"
            " rate_burst, got 1",
        ),
        (
            "name: x\nevent_bus: 5\n",
            "config.yaml: event_bus: expected a mapping with the keys kind and endpoint, got 5",
        ),
    ],
)
def test_section_errors_name_the_key(
    workdir: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    write(workdir, text)
    assert exit_message(capsys) == message


def test_http_section_and_its_env_override(workdir: Path) -> None:
    write(workdir, "name: x\nhttp:\n  enabled: false\n")
    cfg = load_config("config.yaml", env={"ACTORS_HTTP__ADDRESS": "0.0.0.0:0"})
    assert (cfg.settings.http.enabled, cfg.settings.http.address) == (False, "0.0.0.0:0")
    assert cfg.get("http.address") == "0.0.0.0:0"


def test_typed_sections_hold_the_resolved_values(workdir: Path) -> None:
    write(workdir, "pw\n", name="pw")
    write(
        workdir,
        "name: x\naccessor: {username: u, password: '@pw', endpoint: 'core:1'}\n"
        "runtime: {steps: {SyncA: {rate_limit: 2}}}\n",
    )
    settings = load_config("config.yaml", env={}).settings
    assert settings.accessor.kind == "grpcapi" and settings.accessor.password == "pw"
    assert (
        settings.runtime.steps["SyncA"].rate_limit == 2
        and settings.runtime.steps["SyncA"].concurrency is None
    )
    assert settings.event_bus.dead_letter_topic == "x.dead-letters"
    assert settings.store.url == f"sqlite:///{workdir / 'data' / 'actors.db'}"
    with pytest.raises(ValidationError):
        settings.runtime.resync_period = 1  # type: ignore[misc]


def test_schema_default_logging_matches_actors_logs() -> None:
    from actors.logs import default_logging_config

    assert default_values()["logging"] == default_logging_config()


def test_dependency_graph_json_example(tmp_path: Path) -> None:
    graph = {
        "ONOSApp": [["ONOSService", "owner", "service_instances"]],
        "Slice": [],
        "Instance": ["Slice", ["Image"], ["Node", None, None]],  # older and shorter forms
    }
    (tmp_path / "deps.json").write_text(json.dumps(graph), encoding="utf-8")
    cfg = Config.from_dict({"name": "x", "dependency_graph": "deps.json"}, base_dir=tmp_path)
    assert cfg.dependency_graph == graph


def test_documented_defaults_match_the_model() -> None:
    """Every table row whose default is one literal (`30`, `true`, `127.0.0.1:8080`) agrees with the model."""
    import yaml

    defaults = default_values()
    checked = 0
    for key, default in re.findall(r"^\| `([a-z_.]+)` \| [^|]* \| `([^`]*)` \|", DOCS.read_text(), re.M):
        node: Any = defaults
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or key == "data_dir":
            continue
        assert yaml.safe_load(default) == node, (
            f"docs/configuration.md: {key} default `{default}`, model {node!r}"
        )
        checked += 1
    assert checked >= 30
