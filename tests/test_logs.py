"""Tests of actors.logs: console and JSON lines, context, bind/new, dictConfig handling."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from actors import logs
from actors.config import Config
from actors.logs import BoundLogger, ConsoleFormatter, JSONFormatter, create_logger, default_logging_config

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z"


@pytest.fixture(autouse=True)
def isolated_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore the root logger and forget the applied dictConfig after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(logs._setup, "_applied", logs._events._NOTHING)
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def stream_config(
    stream: io.StringIO, formatter: dict[str, Any] | None, level: str = "DEBUG"
) -> dict[str, Any]:
    """A dictConfig writing to *stream* with *formatter* (``None``: no formatter)."""
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "stream": stream}
    config: dict[str, Any] = {
        "version": 1,
        "handlers": {"out": handler},
        "root": {"level": level, "handlers": ["out"]},
    }
    if formatter is not None:
        config["formatters"] = {"f": formatter}
        handler["formatter"] = "f"
    return config


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_console_lines_with_timestamp_level_and_context() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.ConsoleFormatter"}))
    log.info("sync'ing object", object="MyModel-1", pk=1, model_name="MyModel")
    (line,) = out.getvalue().splitlines()
    assert re.match(TIMESTAMP + r" \[info\s*\] sync'ing object\s+\[actors\] ", line), line
    assert line.endswith("object=MyModel-1 pk=1 model_name=MyModel")


def test_json_lines_with_timestamp_level_and_context() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}), name="actors.test")
    log.warning("deleting object", object="o", pk=7, nested={"a": [1, 2]}, odd=object)
    (record,) = json_lines(out)
    assert list(record)[:4] == ["timestamp", "level", "logger", "event"]
    assert re.fullmatch(TIMESTAMP, record["timestamp"])
    assert record["level"] == "warning"
    assert record["logger"] == "actors.test"
    assert record["event"] == "deleting object"
    assert (record["object"], record["pk"], record["nested"]) == ("o", 7, {"a": [1, 2]})
    assert record["odd"] == repr(object)


def test_json_sort_keys_option() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter", "sort_keys": True}))
    log.info("x", b=1, a=2)
    assert list(json_lines(out)[0]) == sorted(json_lines(out)[0])


def test_bind_adds_context_and_new_replaces_it() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    step = log.bind(step="SyncMyModel", attempt=1)
    assert isinstance(step, BoundLogger)
    step.info("one", pk=3)
    fresh = step.new(request="r-1")
    assert isinstance(fresh, BoundLogger)
    fresh.info("two")
    step.info("three")
    log.info("four")
    one, two, three, four = json_lines(out)
    assert (one["step"], one["attempt"], one["pk"]) == ("SyncMyModel", 1, 3)
    assert two["request"] == "r-1" and "step" not in two
    assert three["step"] == "SyncMyModel" and "request" not in three  # new() left `step` alone
    assert "step" not in four


def test_contextvars_are_merged() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    with structlog.contextvars.bound_contextvars(actor="sync-1"):
        log.info("inside")
    log.info("outside")
    inside, outside = json_lines(out)
    assert inside["actor"] == "sync-1" and "actor" not in outside


def test_reserved_names_as_context_do_not_crash() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    reserved = {
        "event": "e",
        "level": "l",
        "logger": "g",
        "timestamp": "t",
        "self": "s",
        "method_name": "m",
        "msg": "mm",
        "args": "a",
        "name": "n",
        "levelname": "ln",
        "extra": "x",
        "_record": "r",
        "_from_structlog": "f",
        "positional_args": "p",
    }
    log.info("reserved", **reserved)
    log.bind(event="bound", level="lv", self="s").new(event="new").info("bound")
    log.log(logging.ERROR, "via log", level="lv")
    first, second, third = json_lines(out)
    assert (first["event"], first["level"], first["logger"]) == ("reserved", "info", "actors")
    assert (first["event_"], first["level_"], first["logger_"], first["timestamp_"]) == ("e", "l", "g", "t")
    assert first["positional_args_"] == "p"
    assert (first["_record_"], first["_from_structlog_"]) == ("r", "f")
    for key in ("self", "method_name", "msg", "args", "name", "levelname", "extra"):
        assert first[key] == reserved[key]
    assert second["event"] == "bound" and second["event_"] == "new" and "level_" not in second
    assert (third["level"], third["level_"]) == ("error", "lv")


def test_positional_format_arguments() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    log.info("pulled %d records from %s", 3, "onos", step="p")
    log.info("100% done", "extra")  # does not fit: kept, not raised
    log.info("50% of %s")  # no arguments: no formatting
    first, second, third = json_lines(out)
    assert first["event"] == "pulled 3 records from onos"
    assert (second["event"], second["format_args"]) == ("100% done", ["extra"])
    assert third["event"] == "50% of %s"


def test_exceptions_are_rendered() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    try:
        raise ValueError("backend down")
    except ValueError:
        log.exception("sync failed", pk=1)
        log.error("also failed", exc_info=True)
    log.error("explicit", exc_info=KeyError("k"))
    log.error("no exception in flight", exc_info=True)
    first, second, third, fourth = json_lines(out)
    assert first["level"] == "error"
    assert "ValueError: backend down" in first["exception"] and "Traceback" in first["exception"]
    assert "ValueError: backend down" in second["exception"]
    assert "KeyError: 'k'" in third["exception"]
    assert "exception" not in fourth and "exc_info" not in fourth


def test_console_exception_traceback() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.ConsoleFormatter"}))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert "[error" in text and "Traceback (most recent call last)" in text and "RuntimeError: boom" in text


def test_levels_of_the_dict_config_apply() -> None:
    out = io.StringIO()
    config = stream_config(out, {"()": "actors.logs.JSONFormatter"}, level="INFO")
    config["loggers"] = {"actors.noisy": {"level": "ERROR"}}
    log = create_logger(config)
    log.debug("hidden")
    log.info("shown")
    create_logger(config, name="actors.noisy").warning("hidden too")
    assert [r["event"] for r in json_lines(out)] == ["shown"]


def test_repeated_create_logger_does_not_duplicate_handlers() -> None:
    out = io.StringIO()
    config = stream_config(out, {"()": "actors.logs.ConsoleFormatter"})
    first = create_logger(config)
    handlers = logging.getLogger().handlers[:]
    for _ in range(5):
        # as modules do at import time: an equal (not identical) mapping each time
        equal = {**config, "handlers": {"out": dict(config["handlers"]["out"])}, "root": dict(config["root"])}
        assert equal == config and equal is not config
        create_logger(equal)
    assert logging.getLogger().handlers == handlers
    first.info("once")
    assert out.getvalue().count("once") == 1


def test_a_different_config_replaces_the_previous_one() -> None:
    one, two = io.StringIO(), io.StringIO()
    create_logger(stream_config(one, {"()": "actors.logs.JSONFormatter"}))
    log = create_logger(stream_config(two, {"()": "actors.logs.JSONFormatter"}))
    log.info("where")
    assert one.getvalue() == "" and json_lines(two)[0]["event"] == "where"
    assert len(logging.getLogger().handlers) == 1


def test_loggers_created_before_the_config_keep_working() -> None:
    out = io.StringIO()
    early = create_logger(None, name="actors.early")
    logging.getLogger("thirdparty.lib")
    create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))  # no disable_existing_loggers
    early.info("early")
    logging.getLogger("thirdparty.lib").info("lib")
    assert [r["event"] for r in json_lines(out)] == ["early", "lib"]


def test_handler_without_formatter_gets_console_lines() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, None))
    log.info("plain handler", k="v")
    assert re.match(TIMESTAMP + r" \[info\s*\] plain handler\s+\[actors\] k=v$", out.getvalue().strip())


def test_other_formatters_get_a_readable_message() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"format": "%(levelname)s %(name)s %(message)s"}))
    log.info("sync'ing object", object="o", pk=1, data={"a": 1})
    assert out.getvalue() == "INFO actors sync'ing object object=o pk=1 data={'a': 1}\n"


def test_stdlib_records_are_rendered_too() -> None:
    out = io.StringIO()
    create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}))
    logging.getLogger("somelib.conn").warning("broker %s down", "k1", extra={"attempt": 2})
    (record,) = json_lines(out)
    assert record["event"] == "broker k1 down"
    assert (record["level"], record["logger"], record["attempt"]) == ("warning", "somelib.conn", 2)
    assert re.fullmatch(TIMESTAMP, record["timestamp"])


def test_formatters_can_be_instantiated_directly() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("actors.direct")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        log = create_logger(None, name="actors.direct")
        logger.setLevel(logging.INFO)
        log.info("direct", a=1)
        handler.setFormatter(ConsoleFormatter(colors=False))
        log.info("console", a=2)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = out.getvalue().splitlines()
    assert json.loads(first)["a"] == 1
    assert "console" in second and "a=2" in second


def test_none_leaves_an_existing_setup_alone(caplog: pytest.LogCaptureFixture) -> None:
    root_handlers = logging.getLogger().handlers[:]
    log = create_logger(None, name="actors.caplog")
    if root_handlers:  # pytest's own handlers: logging counts as configured
        assert logging.getLogger().handlers == root_handlers
    with caplog.at_level(logging.INFO):
        log.info("captured", pk=5)
    assert "captured pk=5" in caplog.text


def test_async_methods() -> None:
    out = io.StringIO()
    log = create_logger(stream_config(out, {"()": "actors.logs.JSONFormatter"}), name="actors.async")

    async def main() -> None:
        await log.ainfo("async info", event="e")
        await log.alog(logging.WARNING, "async log")

    asyncio.run(main())
    events = [(r["event"], r["level"]) for r in json_lines(out) if r["logger"] == "actors.async"]
    assert events == [("async info", "info"), ("async log", "warning")]


def test_default_config_is_console_on_stderr_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    config = default_logging_config()
    assert config["root"] == {"level": "INFO", "handlers": ["console"]}
    log = create_logger(config, name="actors.default")
    log.debug("not shown")
    log.info("shown", k=1)
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert re.search(TIMESTAMP + r" \[info\s*\] shown\s+\[actors.default\] k=1", err)


def test_the_examples_in_docs_logging_md_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "logging.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    for block in blocks:
        config = yaml.safe_load(block)["logging"]
        Config.from_dict({"name": "x", "logging": config})  # valid as the configuration file's key
        for handler in config["handlers"].values():
            if "filename" in handler:
                handler["filename"] = str(tmp_path / "log.jsonl")
        log = create_logger(config, name="actors.docs")
        log.warning("from the docs", k=1)
    assert default_logging_config() == yaml.safe_load(blocks[0])["logging"]
    captured = capsys.readouterr()
    assert "from the docs" in captured.err  # console example
    assert json.loads(captured.out)["event"] == "from the docs"  # JSON example
    assert json.loads((tmp_path / "log.jsonl").read_text())["k"] == 1  # file example


# -- get_logger, configure_logging, held_records, capture_logs --------------------------------
def file_config(path: Path, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig writing JSON lines at ``level`` and above to the file ``path``."""
    return {
        "version": 1,
        "formatters": {"json": {"()": "actors.logs.JSONFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "json", "filename": str(path)}},
        "root": {"level": level, "handlers": ["file"]},
    }


def file_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_structlog_get_logger_in_user_code_obeys_the_configuration(tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    logs.configure_logging(file_config(out))
    try:
        structlog.get_logger("mycode").info("hello", n=1)
        structlog.get_logger("mycode").debug("hidden")
    finally:
        structlog.reset_defaults()
    assert [(e["event"], e["logger"], e["n"]) for e in file_lines(out)] == [("hello", "mycode", 1)]


def test_held_records_are_logged_through_the_configuration_applied_meanwhile(tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    config = file_config(out, "WARNING")
    config["loggers"] = {"actors.quiet": {"level": "ERROR"}}
    with logs.held_records() as held:
        logging.getLogger("actors.config").warning("early %s", "warning")
        logging.getLogger("actors.quiet").warning("filtered by the configured level")
        assert len(held) == 2 and not out.exists()
        logs.configure_logging(config)
    assert [(e["event"], e["logger"]) for e in file_lines(out)] == [("early warning", "actors.config")]
    assert logging.getLogger("actors").propagate


def test_a_disabled_level_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    log = logs.get_logger("actors.cheap")
    logging.getLogger("actors.cheap").setLevel(logging.WARNING)

    def built(*args: Any) -> Any:
        raise AssertionError("the event was built")

    monkeypatch.setattr(logs._logger, "_event_dict", built)  # where the event is built
    try:
        assert log.info("synced", model="MyModel", id=1) is None
    finally:
        logging.getLogger("actors.cheap").setLevel(logging.NOTSET)
    with pytest.raises(AssertionError, match="built"):
        log.warning("shown")


def test_capture_logs_collects_the_framework_events() -> None:
    log = logs.get_logger("actors.runtime")
    with logs.capture_logs() as captured:
        log.bind(step="S").debug("synced", model="M", id=3)
        logging.getLogger("actors.store").warning("plain %d", 4)
    assert captured == [
        {
            "event": "synced",
            "step": "S",
            "model": "M",
            "id": 3,
            "level": "debug",
            "logger": "actors.runtime",
            "timestamp": captured[0]["timestamp"],
            "log_level": "debug",
        },
        {"event": "plain 4", "log_level": "warning", "logger": "actors.store"},
    ]


def test_a_record_names_the_line_that_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = logs.get_logger("actors.where")
    with caplog.at_level(logging.INFO, logger="actors.where"):
        log.info("here")
        log.bind(k=1).log(logging.WARNING, "there")
    assert [(r.filename, r.funcName) for r in caplog.records] == [
        ("test_logs.py", "test_a_record_names_the_line_that_logged")
    ] * 2


# Events that exercise the rendering: quoting, non-string values, renamed reserved keys,
# %-format arguments, a missing event, a logger_name key.
EVENTS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("synced",), {"model": "MyModel", "id": 3, "deleted": False}),
    (("two words",), {"s": "a b", "q": "it's", "eq": "k=v", "nl": "a\nb", "bare": "plain", "n": None}),
    (("nested",), {"d": {"a": [1, 2]}, "t": (1,), "f": 1.5, "o": object}),
    (("reserved",), {"event": "e", "level": "l", "logger": "g", "timestamp": "t", "logger_name": "ln"}),
    (("%d of %s",), {"positional": True}),
    ((), {"no_event": 1}),
    (("a much longer event than the thirty-character pad",), {"k": ""}),
]


def structlog_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """What structlog's ProcessorFormatter (the formatter's base class) makes of *record*."""
    return structlog.stdlib.ProcessorFormatter.format(formatter, record)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "formatter",
    [ConsoleFormatter(), ConsoleFormatter(sort_keys=True), JSONFormatter(), JSONFormatter(sort_keys=True)],
    ids=["console", "console-sorted", "json", "json-sorted"],
)
def test_the_direct_rendering_gives_structlogs_text(formatter: logging.Formatter) -> None:
    records: list[logging.LogRecord] = []
    holder = logs._capture._Appender(records)
    logger = logging.getLogger("actors.render")
    logger.addHandler(holder)
    logger.setLevel(logging.DEBUG)
    try:
        log = logs.get_logger("actors.render").bind(step="SyncMyModel", event="bound")
        for args, kw in EVENTS:
            if args and "%" in args[0]:
                log.info(args[0], 2, "ten", **kw)
            else:
                log.warning(*args, **kw)
    finally:
        logger.removeHandler(holder)
        logger.setLevel(logging.NOTSET)
    assert len(records) == len(EVENTS)
    for record in records:
        assert isinstance(record.msg, logs._events._EventDict)
        assert formatter.format(record) == structlog_text(formatter, record)
    assert "2 of ten" in formatter.format(records[4])


def test_the_direct_rendering_is_used_only_where_it_gives_the_same_text() -> None:
    message = logs._events._EventDict(event="e", k="v")
    record = logging.LogRecord("actors", logging.INFO, __file__, 1, message, (), None)
    assert ConsoleFormatter()._fast and JSONFormatter()._fast
    assert not ConsoleFormatter(fmt="%(levelname)s %(message)s")._fast
    assert not JSONFormatter(keep_exc_info=True)._fast
    assert ConsoleFormatter(fmt="%(levelname)s %(message)s").format(record).startswith("INFO ")
    colored = ConsoleFormatter(colors=True).format(record)
    assert "\x1b[" in colored and colored.endswith("\x1b[0m")


def test_the_timestamp_is_iso_utc_with_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    for ns in (1_796_126_400_123_456_789, 1_796_126_400_000_000_000, 1_796_126_401_000_001_000):
        monkeypatch.setattr(logs._events.time, "time_ns", lambda ns=ns: ns)
        moment = datetime.datetime.fromtimestamp(ns // 1000 / 1e6, tz=datetime.UTC)
        assert logs._events._now_iso() == moment.isoformat().replace("+00:00", "Z")


def test_a_custom_record_factory_or_logger_class_still_gets_every_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = plain(*args, **kwargs)
        record.tagged = True
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", factory)
    with logs.capture_logs("actors.factory") as captured:
        records: list[logging.LogRecord] = []
        logging.getLogger("actors.factory").addHandler(logs._capture._Appender(records))
        logs.get_logger("actors.factory").info("made", k=1)
    assert getattr(records[0], "tagged", False) and records[0].funcName.startswith("test_a_custom")
    assert (captured[0]["event"], captured[0]["k"]) == ("made", 1)
