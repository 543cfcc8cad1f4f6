"""The configuration model: one pydantic class per section, with its defaults and checks. Each
field's docstring is its JSON Schema description; its type's :func:`says` words a valid value."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

from actors._logging_default import DEFAULT_LOGGING

from ._checks import (
    ADDRESS,
    KAFKA_ENDPOINT,
    URL,
    absolute,
    check_graph,
    check_kafka_options,
    existing,
    password,
    read_graph,
    resolved,
    resolving,
    store_url,
)
from ._errors import LATE, PROBLEM, SHAPE, describe, problem, wrong

#: The value of a required key left out, until its type reports it.
ABSENT: Any = object()


def says(expected: str, *, secret: bool = False, **checks: Any) -> tuple[Any, Any]:
    """Type metadata (``Annotated[int, *says(...)]``): pydantic's ``checks``, and a value the type
    refuses worded "expected <expected>, got <value>" (``secret``: the value not shown)."""

    def worded(value: Any, handler: Callable[[Any], Any]) -> Any:
        if value is ABSENT:
            raise problem(f"missing required key; expected {expected}", expected)
        try:
            return handler(value)
        except ValidationError as exc:
            if any(error["loc"] or error["type"] in (PROBLEM, LATE) for error in exc.errors()):
                raise  # an error of a key inside, or one of the model's own: already worded
            raise wrong(expected, value, secret=secret) from None

    return Field(json_schema_extra={"x-expected": expected}, **checks), WrapValidator(worded)


def _original(why: str) -> Any:
    description = f"Of the original framework, accepted and ignored: {why}."
    return Field(None, description=description, json_schema_extra={"x-original": why})


def schema_extra(field: Any) -> dict[str, Any]:
    """The ``json_schema_extra`` of a field (``x-expected``, ``x-original``)."""
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


_ENDPOINT = 'a string like "host:port"'
_ENDPOINTS = 'a string like "host:port" or a list of them'
_GRAPH = "a path to a JSON file or a mapping {Model: [[OtherModel, src_accessor, dst_accessor], ...]}"
_VERSION = "1 (the version of the logging dictConfig schema)"
Seconds = Annotated[float, *says("a number of seconds > 0", gt=0)]
Wait = Annotated[float, *says("a number of seconds >= 0", ge=0)]
Count = Annotated[int, *says("an integer >= 1", ge=1)]
Flag = Annotated[bool, *says("true or false")]
Folder = Annotated[str, *says("a folder path", min_length=1)]
File = Annotated[str, *says("a file path", min_length=1)]
Address = Annotated[str, *says(_ENDPOINT, pattern=ADDRESS)]
Password = Annotated[str, *says('a password string, or "@file" to read it from a file', secret=True)]
InFile = Annotated[File, resolved(lambda base, value: existing(base, value, folder=False))]
InFolder = Annotated[Folder, resolved(lambda base, value: existing(base, value, folder=True))]
Secret = Annotated[Password, resolved(password)]
Name = Annotated[str, *says("a user name", min_length=1)]
AnyMapping = Annotated[dict[str, Any], *says("a mapping")]
KafkaOptions = Annotated[dict[str, Any], AfterValidator(check_kafka_options)]


class Section(BaseModel):
    """A configuration section: strict types, unknown keys refused, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        """Unknown keys (the allowed ones named, the original framework's left out), a value that is no
        mapping, and missing keys (marked :data:`ABSENT`, for their type to word)."""
        fields = cls.model_fields
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            expected = "a mapping with the keys " + ", ".join(fields)
            raise problem(f"expected {expected}, got {describe(data)}", expected, kind=SHAPE)
        for key in data:
            if key not in fields:
                allowed = sorted(k for k, f in fields.items() if "x-original" not in schema_extra(f))
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                expected = "one of the keys " + ", ".join(allowed)
                raise problem(f"unknown key{hint}; allowed keys: {', '.join(allowed)}", expected, (key,))
        return {**{key: ABSENT for key, f in fields.items() if f.is_required()}, **data}


class EventBus(Section):
    """``event_bus``: the Kafka bus the event steps consume from."""

    kind: Literal["kafka"] = "kafka"
    """The bus technology; Kafka is the only one."""
    endpoint: Annotated[str | list[str] | None, *says(_ENDPOINTS)] = None
    """Bootstrap server(s): "host:port" (port 9092 if left out), comma-separated, or a list."""
    dead_letter_topic: Annotated[
        str | None,
        *says('a Kafka topic name (letters, digits, ".", "_" or "-")', pattern=r"^[A-Za-z0-9._-]{1,249}$"),
    ] = None
    """Where an event goes after max_retries failed attempts (default "<name>.dead-letters")."""
    max_retries: Annotated[int, *says("an integer >= 0", ge=0)] = 3
    """Retries of a failing process_event before the event is dead-lettered."""
    retry_backoff: Seconds = 0.5
    """The wait before the first retry of a failing event (doubling after)."""
    retry_backoff_max: Seconds = 30.0
    """The longest wait between two attempts at one event."""
    poll_timeout: Seconds = 0.1
    """How long one poll waits for records when nothing is buffered."""
    commit_interval: Seconds = 1.0
    """Processed offsets are committed at least this often."""
    metadata_max_age: Seconds = 5.0
    """Topic metadata refresh: how soon a new topic matching a pattern is picked up."""
    connect_timeout: Seconds = 2.0
    """How long one attempt to reach a bootstrap server may block the actor."""
    reconnect_backoff: Seconds = 0.5
    """First wait between attempts to reach the broker when none answers (doubling)."""
    reconnect_backoff_max: Seconds = 30.0
    """Longest wait between those attempts."""
    health_grace: Seconds = 2.0
    """How long the group coordinator may stay unreachable before the actor reports degraded."""
    dead_letter_timeout: Seconds = 10.0
    """How long a dead-letter write may wait for the broker."""
    stall_timeout: Seconds = 60.0
    """An owned partition with events left and no progress this long is stalled: the actor recovers."""
    max_poll_records: Count = 500
    """Events buffered for one partition at which its fetching pauses (it resumes below half)."""
    consumer: Annotated[KafkaOptions, *says("a mapping of kafka-python KafkaConsumer options")] = {}
    """Extra kafka-python KafkaConsumer options (not those the framework owns)."""
    producer: Annotated[KafkaOptions, *says("a mapping of kafka-python KafkaProducer options")] = {}
    """Extra kafka-python KafkaProducer options."""

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value != "kafka":
            raise problem(f"{value!r} is not supported (only 'kafka')", '"kafka"')
        return value

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise problem("expected a non-empty list", _ENDPOINTS)
            for index, item in enumerate(value):
                if not isinstance(item, str) or not re.match(KAFKA_ENDPOINT, item):
                    raise wrong(_ENDPOINT, item, (index,))
        elif value is not None and not (isinstance(value, str) and re.match(KAFKA_ENDPOINT, value)):
            raise wrong(_ENDPOINTS, value)
        return value


class Accessor(Section):
    """``accessor``: where steps read and write models (the local store, or an XOS core over gRPC)."""

    kind: Annotated[Literal["local", "grpcapi"], *says('"local" or "grpcapi"')] = "local"
    """"local": the core runs in this process, on the store; "grpcapi": a core reached over gRPC."""
    endpoint: Address | None = None
    """The core's gRPC address (required with kind grpcapi)."""
    username: Name | None = None
    """The user to log in as (required with password)."""
    password: Secret | None = None
    """Its password; "@path" reads it from a file."""
    token: Annotated[str | None, *says("a token string", secret=True, min_length=1)] = None
    """A token to authenticate with instead of a user name and password."""
    tls_ca: InFile | None = None
    """CA certificate (PEM) to verify the core's TLS certificate."""
    connect_timeout: Seconds = 30
    """How long the synchronizer waits at start for the core to answer."""

    @model_validator(mode="after")
    def _required(self) -> Accessor:
        if self.kind == "grpcapi" and self.endpoint is None:
            why = 'needed when kind is "grpcapi"'
            raise problem(f"missing required key ({why}); expected {_ENDPOINT}", _ENDPOINT, ("endpoint",))
        if self.password is not None and self.username is None:
            message = "missing required key (needed with password); expected a user name"
            raise problem(message, "a user name", ("username",))
        if self.endpoint is not None and "kind" not in self.model_fields_set:
            return self.model_copy(update={"kind": "grpcapi"})  # the original's default kind
        return self


class Store(Section):
    """``store``: the database of the embedded core."""

    url: Annotated[str | None, *says(URL, min_length=1)] = None
    """SQLAlchemy URL (default sqlite:///<data_dir>/actors.db; relative SQLite paths are resolved)."""


class StepOverrides(Section):
    """``runtime.steps.<StepName>``: the limits of one sync step, over its class's attributes."""

    concurrency: Count | None = None
    """Objects the step handles at once."""
    rate_limit: Annotated[float | None, *says("a number of objects per second > 0", gt=0)] = None
    """Handler calls per second at most."""
    rate_burst: Count | None = None
    """Calls at once after a pause, under rate_limit."""


class Runtime(Section):
    """``runtime``: timing and limits of the actors."""

    resync_period: Seconds = 30
    """How often each step actor re-reads its set of dirty objects."""
    step_deadline: Seconds = 600
    """How long one handler call may run before its actor is considered hung and replaced."""
    restart_backoff: Wait = 1
    """The wait before a failed child actor is restarted."""
    max_restarts: Annotated[int, *says("an integer >= 0", ge=0)] = 5
    """Restarts of one child allowed within restart_window."""
    restart_window: Seconds = 60
    """The window max_restarts counts in."""
    pull_period: Seconds = 5
    """How often each pull step's pull_records() runs."""
    shutdown_timeout: Wait = 10
    """How long a stop waits for the actors to finish their work."""
    isolation: Annotated[
        Literal["thread", "process"],
        *says('"thread" or "process" (where step handlers run unless a step sets isolation)'),
    ] = "thread"
    """Where step handlers run unless a step sets isolation: in the actor's thread, or a child process."""
    step_concurrency: Annotated[
        int, *says("an integer >= 1 (objects one sync step handles at once)", ge=1)
    ] = 1
    """Objects one sync step handles at once, unless the step sets concurrency."""
    steps: Annotated[dict[str, StepOverrides], *says("a mapping of sync step class name to its limits")] = {}
    """Per sync step class name: its limits (concurrency, rate_limit, rate_burst)."""


class Tls(Section):
    """``api.tls``: the API server's certificate and key."""

    cert: InFile
    """Server certificate (PEM)."""
    key: InFile
    """Its private key (PEM)."""


class ApiUser(Section):
    """An entry of ``api.users``."""

    username: Name
    """The user name (unique)."""
    password: Secret | None = None
    """The password ("@path" reads it from a file); this or password_hash."""
    password_hash: Annotated[str | None, *says("a password hash string", secret=True, min_length=1)] = None
    """A password hash instead of the password."""
    role: Annotated[
        Literal["admin", "synchronizer", "readonly"], *says('"admin", "synchronizer" or "readonly"')
    ]
    """What the user may do."""

    @model_validator(mode="after")
    def _one_password(self) -> ApiUser:
        if (self.password is None) == (self.password_hash is None):
            expected = "a mapping with username, role and exactly one of password or password_hash"
            raise wrong(expected, self.model_dump(exclude_none=True))
        return self


class Api(Section):
    """``api``: the gRPC API server."""

    enabled: Flag = True
    """Whether to serve the API."""
    address: Address = "127.0.0.1:50051"
    """Where to listen (host:port; port 0 lets the system choose)."""
    tls: Annotated[Tls | None, *says("a mapping with the keys cert and key")] = None
    """TLS for the server; without it the server is not encrypted."""
    users: Annotated[list[ApiUser], *says("a list of users")] = []
    """Who may call the API."""
    anonymous_read: Flag | None = None
    """Whether calls without credentials may read (not set: only when no users are configured)."""
    max_message_bytes: Annotated[
        int, *says("an integer number of bytes between 1024 and 2147483647", ge=1024, le=2147483647)
    ] = 4194304
    """The largest gRPC request the server accepts."""
    max_concurrent_calls: Annotated[int, *says("an integer between 1 and 1000", ge=1, le=1000)] = 1
    """How many API calls of the main job run their handler at once (not watches, logins); others wait."""
    backlog_limit: Annotated[int, *says("an integer number of objects, 0 or more", ge=0)] = 1000
    """Hold back API writes while the main job's sync steps have this many objects to sync (0: never)."""
    backlog_wait: Annotated[float, *says("a number of seconds between 0 and 60", ge=0, le=60)] = 1.0
    """The longest one API write is held back by ``backlog_limit`` (seconds)."""
    sync_share: Annotated[float, *says("a number at least 0 and below 1", ge=0, lt=1)] = 0.5
    """The share of the time API calls leave to the main job's sync steps while they have objects to sync."""

    @model_validator(mode="after")
    def _unique_users(self) -> Api:
        names = [user.username for user in self.users]
        for index, name in enumerate(names):
            if name in names[:index]:
                message, at = f'the user name "{name}" is used twice', ("users", index, "username")
                raise problem(message, "a user name not used by another user", at, kind=LATE)
        return self


class Http(Section):
    """``http``: the operator HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``)."""

    enabled: Flag = True
    """Whether the synchronizer serves the operator HTTP endpoint."""
    address: Address = "127.0.0.1:8080"
    """Where it listens (host:port; port 0 lets the system choose)."""


class Settings(Section):
    """The whole configuration file: its top-level keys and sections."""

    name: Annotated[
        str,
        *says(
            'a name made of letters, digits, ".", "_" or "-"'
            " (the synchronizer name, also the Kafka consumer group id)",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            max_length=200,
        ),
    ]
    """The synchronizer name; also the Kafka consumer group id."""
    core_version: Annotated[str | None, *says('a version string such as "4.0.0" (quote it in YAML)')] = None
    """The version of the core the synchronizer was written for (informative)."""
    logging: Annotated[dict[str, Any], *says("a Python logging dictConfig mapping")] = DEFAULT_LOGGING
    """A Python logging dictConfig for the whole process; replaces the default whole."""
    models_dir: InFolder | None = None
    """Folder of the .xproto model files (convenience wrappers in its convenience/ subfolder)."""
    steps_dir: InFolder | None = None
    """Folder scanned for SyncStep classes."""
    pull_steps_dir: InFolder | None = None
    """Folder scanned for PullStep classes."""
    event_steps_dir: InFolder | None = None
    """Folder scanned for EventStep classes."""
    model_policies_dir: InFolder | None = None
    """Folder scanned for Policy classes."""
    dependency_graph: Annotated[str | dict[str, list[Any]] | None, *says(_GRAPH)] = None
    """The model dependency graph: a JSON file, or the same content inline."""
    required_models: Annotated[
        list[Annotated[str, *says("a model name", min_length=1)]], *says("a list of model names")
    ] = []
    """Models that must exist in the core before the synchronizer starts."""
    backoff_disabled: Flag = False
    """Retry a failing object at every pass instead of backing off."""
    data_dir: Annotated[Folder, resolved(absolute), Field(validate_default=True)] = "data"
    """Folder of the embedded store and other local state (made by whoever uses it)."""
    event_bus: Annotated[EventBus, *says("a mapping with the keys kind and endpoint")] = EventBus()
    """The event bus of the event steps."""
    accessor: Annotated[Accessor, *says('a mapping with the key kind and, for "grpcapi", endpoint')] = (
        Accessor()
    )
    """Where steps read and write models."""
    store: Annotated[Store, *says("a mapping with the key url")] = Store()
    """The database of the embedded core."""
    runtime: Annotated[Runtime, *says("a mapping of runtime settings")] = Runtime()
    """Timing and limits of the actors."""
    api: Annotated[Api, *says("a mapping of API server settings")] = Api()
    """The gRPC API server."""
    http: Annotated[Http, *says("a mapping of HTTP endpoint settings")] = Http()
    """The operator HTTP endpoint."""

    # The original framework's keys that do nothing here: accepted with their original types,
    # kept, and each named by a warning; not offered among the allowed keys of an error.
    xos_dir: Folder | None = _original("the folder of the XOS core's code; there is no core code here")
    desired_state: Annotated[str | None, *says('a string ("load" or "unload")')] = _original(
        "loading or unloading the service's models into the core; they are loaded at start here"
    )
    wrappers: Annotated[
        list[Annotated[str, *says("a module name")]] | None, *says("a list of module names")
    ] = _original("convenience modules named one by one; here they are read from <models_dir>/convenience")
    blueprints: Annotated[list[AnyMapping] | None, *says("a list of mappings")] = _original(
        "network blueprints of the OpenStack synchronizers"
    )
    link_graph: File | None = _original("read by no code of the original either")
    sys_dir: Folder | None = _original("the Ansible support folder of the older synchronizers")
    kafka_bootstrap_servers: Annotated[
        list[Annotated[str, *says(_ENDPOINT)]] | None, *says('a list of strings like "host:port"')
    ] = _original("the Kafka servers of the original's producer helper; event steps use event_bus.endpoint")
    keep_temp_files: Flag | None = _original("the Ansible temporary files of the older synchronizers")
    proxy_ssh: AnyMapping | None = _original("the SSH proxy of the Ansible-based synchronizers")
    error_map_path: File | None = _original("the error map of the OpenStack synchronizer")
    feefie: AnyMapping | None = _original("the feefie DNS settings of the older synchronizers")
    node_key: File | None = _original("the SSH key of the compute nodes (OpenStack synchronizer)")
    config_dir: Folder | None = _original("the folder of SyncStep.get_prop files (never set)")
    images_directory: Folder | None = _original("the VM images of the OpenStack synchronizer")
    nova: AnyMapping | None = _original("the OpenStack Nova settings")
    database: Annotated[
        dict[str, Any] | None, *says("a mapping with the keys name, username and password")
    ] = _original("the XOS core's database; the store here is configured with store.url")

    @field_validator("logging")
    @classmethod
    def _logging(cls, value: dict[str, Any]) -> dict[str, Any]:
        version = value.get("version", ABSENT)
        if version is ABSENT:
            raise problem(f"missing required key; expected {_VERSION}", _VERSION, ("version",))
        if version != 1 or isinstance(version, bool):
            raise wrong(_VERSION, version, ("version",))
        return value

    @field_validator("dependency_graph", mode="before")
    @classmethod
    def _graph(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict):
            return check_graph(value)
        if value is not None and not (isinstance(value, str) and value):
            raise wrong(_GRAPH, value)
        if value is not None and (base := resolving(info)) is not None:
            read_graph(value := existing(base, value, folder=False))
        return value

    @model_validator(mode="after")
    def _derived(self, info: ValidationInfo) -> Settings:
        """The defaults that depend on other keys: the dead-letter topic, the store URL (when resolving)."""
        update: dict[str, Any] = {}
        if self.event_bus.dead_letter_topic is None:
            topic = f"{self.name}.dead-letters"
            update["event_bus"] = self.event_bus.model_copy(update={"dead_letter_topic": topic})
        if (base := resolving(info)) is not None:
            url = store_url(self.store.url, self.data_dir, base)
            update["store"] = self.store.model_copy(update={"url": url})
        return self.model_copy(update=update) if update else self


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file, generated from :class:`Settings`."""
    return Settings.model_json_schema()


def default_values() -> dict[str, Any]:
    """The defaults of every key that has one, as a nested mapping (a fresh copy)."""
    return Settings.model_construct().model_dump(exclude_none=True, exclude={"name"})
