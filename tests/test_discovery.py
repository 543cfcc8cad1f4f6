"""Discovery of step classes in a synchronizer's folders, and loading whole synchronizers."""

from __future__ import annotations

import logging
import pickle
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.compat import load_synchronizer
from actors.config import Config
from actors.models import load_schema
from actors.orm import ModelAccessor
from actors.steps import (
    EventStep,
    LoadError,
    Policy,
    PullStep,
    StepFactory,
    SyncStep,
    abstract_step,
    describe,
    discover,
    discover_factories,
    import_file,
    import_folder,
    import_session,
    instantiate,
    is_abstract_step,
    unload_namespace,
)
from actors.store import Store

_counter = iter(range(1, 1_000_000))


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        header = STEP_HEADER if text.startswith(STEP_HEADER) else ""
        (folder / name).write_text(header + textwrap.dedent(text[len(header) :]), encoding="utf-8")
    return folder


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"test_discovery_ns{next(_counter)}"
    yield name
    unload_namespace(name)


pytestmark = pytest.mark.usefixtures("keep_root_logging")


STEP_HEADER = "from actors.steps import SyncStep, Policy, PullStep, EventStep\n"


# -- LoadError ------------------------------------------------------------------
def test_load_error_is_one_line() -> None:
    assert str(LoadError("/s/a.py", "SyncA", "ZeroDivisionError: division by zero")) == (
        "/s/a.py: SyncA: ZeroDivisionError: division by zero"
    )
    assert str(LoadError("/s/a.py", None, "SyntaxError: bad")) == "/s/a.py: SyntaxError: bad"


# -- discover ---------------------------------------------------------------------
def test_discovers_subclasses_in_file_order(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "b_steps.py": STEP_HEADER
            + """
            class SyncB(SyncStep):
                observes = "B"

            class SyncC(SyncStep):
                observes = ["C", "D"]
            """,
            "a_steps.py": STEP_HEADER
            + """
            class SyncA(SyncStep):
                observes = "A"

            class NotAStep:
                observes = "X"
            """,
        },
    )
    classes, errors = discover(folder, SyncStep, namespace=namespace)
    assert errors == []
    assert [c.__name__ for c in classes] == ["SyncA", "SyncB", "SyncC"]
    assert classes[0].__module__ == f"{namespace}.a_steps"
    assert sys.modules[f"{namespace}.a_steps"].SyncA is classes[0]


def test_skips_base_abstract_and_steps_without_observes(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "steps.py": STEP_HEADER
            + """
            from actors.steps import abstract_step

            class NoObserves(SyncStep):
                pass

            @abstract_step
            class Base(SyncStep):
                observes = "A"

            class Concrete(Base):
                pass

            class Empty(SyncStep):
                observes = []
            """,
        },
    )
    classes, errors = discover(folder, SyncStep, namespace=namespace)
    assert errors == []
    assert [c.__name__ for c in classes] == ["Concrete"]
    assert is_abstract_step(classes[0].__mro__[1]) and not is_abstract_step(classes[0])


def test_policies_need_model_name_other_kinds_do_not(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "mixed",
        {
            "mixed.py": STEP_HEADER
            + """
            class BasePolicy(Policy):
                pass

            class APolicy(BasePolicy):
                model_name = "A"

            class APull(PullStep):
                pass

            class AnEvent(EventStep):
                topics = ["t"]
            """,
        },
    )
    assert [c.__name__ for c in discover(folder, Policy, namespace=f"{namespace}.p")[0]] == ["APolicy"]
    assert [c.__name__ for c in discover(folder, PullStep, namespace=f"{namespace}.q")[0]] == ["APull"]
    assert [c.__name__ for c in discover(folder, EventStep, namespace=f"{namespace}.e")[0]] == ["AnEvent"]


def test_imported_classes_are_taken_once(tmp_path: Path, namespace: str) -> None:
    lib = _write(
        tmp_path / "lib",
        {
            "shared_steps_lib.py": STEP_HEADER
            + """
            class SyncShared(SyncStep):
                observes = "S"
            """
        },
    )
    folder = _write(
        tmp_path / "steps",
        {
            "one.py": "from shared_steps_lib import SyncShared\n",
            "two.py": "from shared_steps_lib import SyncShared\n",
        },
    )
    sys.path.insert(0, str(lib))
    try:
        classes, errors = discover(folder, SyncStep, namespace=namespace)
    finally:
        sys.path.remove(str(lib))
        sys.modules.pop("shared_steps_lib", None)
    assert errors == []
    assert [c.__name__ for c in classes] == ["SyncShared"]


def test_failing_file_is_an_error_and_the_others_load(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "a_good.py": STEP_HEADER + "class SyncA(SyncStep):\n    observes = 'A'\n",
            "b_bad.py": STEP_HEADER + "x = 1 / 0\n",
            "c_syntax.py": "def broken(:\n",
            "d_exit.py": "import sys\nsys.exit(3)\n",
            "e_good.py": STEP_HEADER + "class SyncE(SyncStep):\n    observes = 'E'\n",
        },
    )
    classes, errors = discover(folder, SyncStep, namespace=namespace)
    assert [c.__name__ for c in classes] == ["SyncA", "SyncE"]
    assert [Path(e.path).name for e in errors] == ["b_bad.py", "c_syntax.py", "d_exit.py"]
    bad = errors[0]
    assert bad.path == str(folder / "b_bad.py")
    assert bad.cls is None
    assert bad.message == "ZeroDivisionError: division by zero"
    assert str(bad) == f"{folder / 'b_bad.py'}: ZeroDivisionError: division by zero"
    assert errors[1].message.startswith("SyntaxError: ")
    assert errors[2].message == "SystemExit: 3"
    assert "\n" not in str(errors[1])
    assert f"{namespace}.b_bad" not in sys.modules


def test_test_and_private_files_are_skipped(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "test_steps.py": "raise RuntimeError('tests are not imported')\n",
            "tests.py": "raise RuntimeError('tests are not imported')\n",
            "_private.py": "raise RuntimeError('private files are not imported')\n",
            "__init__.py": "raise RuntimeError('__init__ is not imported')\n",
            "notes.txt": "not python",
            "real.py": STEP_HEADER + "class SyncReal(SyncStep):\n    observes = 'R'\n",
        },
    )
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.py").write_text("raise RuntimeError('not recursive')\n")
    classes, errors = discover(folder, SyncStep, namespace=namespace)
    assert errors == []
    assert [c.__name__ for c in classes] == ["SyncReal"]


def test_missing_folder_is_an_error(tmp_path: Path, namespace: str) -> None:
    classes, errors = discover(tmp_path / "nope", SyncStep, namespace=namespace)
    assert classes == []
    assert len(errors) == 1 and errors[0].path == str(tmp_path / "nope")
    assert errors[0].message.startswith("FileNotFoundError")


def test_sibling_imports_work_and_leave_no_plain_module(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "_discovery_helper.py": "GREETING = 'hi'\n",
            "a.py": STEP_HEADER
            + """
            import _discovery_helper

            class SyncA(SyncStep):
                observes = "A"
                greeting = _discovery_helper.GREETING
            """,
        },
    )
    path_before = list(sys.path)
    classes, errors = discover(folder, SyncStep, namespace=namespace)
    assert errors == []
    step: Any = classes[0]
    assert step.greeting == "hi"
    assert "_discovery_helper" not in sys.modules
    assert sys.path == path_before


def _helper_tree(root: Path) -> tuple[Path, Path]:
    """A synchronizer root with ``helpers.py`` and two step folders importing it by plain name."""
    _write(root, {"_session_helpers.py": "CALLS = []\n"})
    pull = _write(
        root / "pull_steps",
        {
            "pull.py": STEP_HEADER
            + """
            from _session_helpers import CALLS

            class PullA(PullStep):
                calls = CALLS
            """
        },
    )
    events = _write(
        root / "event_steps",
        {
            "events.py": STEP_HEADER
            + """
            import _session_helpers

            class EventA(EventStep):
                topics = ["t"]
                technology = "kafka"
                calls = _session_helpers.CALLS
            """
        },
    )
    return pull, events


def test_session_folders_are_importable_from_every_folder(tmp_path: Path, namespace: str) -> None:
    pull, events = _helper_tree(tmp_path)
    path_before = list(sys.path)
    # Without the synchronizer's root on the path, the helper is not found (the old behaviour).
    classes, errors = discover(pull, PullStep, namespace=f"{namespace}.alone")
    assert classes == [] and "No module named '_session_helpers'" in str(errors[0])
    with import_session([pull, events, tmp_path]):
        assert sys.path[:3] == [str(pull.resolve()), str(events.resolve()), str(tmp_path.resolve())]
        (pull_step,), errors = discover(pull, PullStep, namespace=f"{namespace}.pull")
        assert errors == []
        (event_step,), errors = discover(events, EventStep, namespace=f"{namespace}.events")
        assert errors == []
        step: Any = pull_step
        assert step.calls is getattr(event_step, "calls"), "one helper module for the whole session"  # noqa: B009
        assert "_session_helpers" in sys.modules
    assert "_session_helpers" not in sys.modules, "dropped when the session ends"
    assert sys.path == path_before
    assert f"{namespace}.pull.pull" in sys.modules and f"{namespace}.events.events" in sys.modules


def test_a_library_found_outside_the_session_stays(tmp_path: Path, namespace: str) -> None:
    # The config folder is often the working folder, already on sys.path (with the project's
    # own packages in it): what a step imports from there is not a helper to drop.
    library = tmp_path / "lib"
    _write(library / "_already_importable", {"__init__.py": "VALUE = 1\n"})
    steps = _write(
        tmp_path / "steps",
        {"s.py": STEP_HEADER + "import _already_importable\nclass SyncS(SyncStep):\n    observes = 'S'\n"},
    )
    sys.path.insert(0, str(library))
    try:
        with import_session([steps, library]):
            (_step,), errors = discover(steps, SyncStep, namespace=namespace)
            assert errors == []
        assert "_already_importable" in sys.modules
        assert sys.path[0] == str(library), "a folder already on sys.path is left where it was"
    finally:
        sys.path.remove(str(library))
        sys.modules.pop("_already_importable", None)


def _service_putting_itself_on_the_path(root: Path, marker: str) -> Path:
    """A synchronizer whose step appends its own root to ``sys.path``, as CORD services do."""
    _write(root, {"_own_helpers.py": f"WHO = {marker!r}\n"})
    return _write(
        root / "steps",
        {
            "sync_s.py": STEP_HEADER
            + """
            import os, sys
            sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            from _own_helpers import WHO

            class SyncS(SyncStep):
                observes = "S"
                who = WHO
            """
        },
    )


def test_a_folder_the_service_put_on_the_path_stays_its_own(tmp_path: Path, namespace: str) -> None:
    # Each loaded after the other, in one process: one after another, and one again at the end.
    first = _service_putting_itself_on_the_path(tmp_path / "first", "first")
    second = _service_putting_itself_on_the_path(tmp_path / "second", "second")
    path_before = list(sys.path)
    seen = []
    for i, steps in enumerate((first, second, second, first)):
        with import_session([steps, steps.parent]):
            (step,), errors = discover(steps, SyncStep, namespace=f"{namespace}.n{i}")
        assert errors == []
        seen.append(getattr(step, "who"))  # noqa: B009
        assert sys.path == path_before, "the service's own entry leaves with the session"
        assert "_own_helpers" not in sys.modules
    assert seen == ["first", "second", "second", "first"]


def test_import_file(tmp_path: Path, namespace: str) -> None:
    _write(
        tmp_path,
        {"_file_helper.py": "VALUE = 41\n", "models.py": "from _file_helper import VALUE\nX = VALUE + 1\n"},
    )
    module = import_file(tmp_path / "models.py", namespace=namespace)
    assert module.X == 42 and module.__name__ == f"{namespace}.models"
    assert sys.modules[f"{namespace}.models"] is module and "_file_helper" not in sys.modules
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        import_file(tmp_path / "broken.py", namespace=namespace)
    assert f"{namespace}.broken" not in sys.modules


def test_modules_are_registered_under_the_namespace(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {
            "withdata.py": STEP_HEADER
            + """
            from dataclasses import dataclass

            @dataclass
            class Item:
                name: str

            class SyncItem(SyncStep):
                observes = "Item"
            """,
        },
    )
    modules, errors = import_folder(folder, namespace=namespace)
    assert errors == []
    ((file, module),) = modules
    assert file == folder / "withdata.py"
    assert module.__name__ == f"{namespace}.withdata"
    assert "withdata" not in sys.modules
    item = module.Item("x")
    assert pickle.loads(pickle.dumps(item)) == item
    unload_namespace(namespace)
    assert f"{namespace}.withdata" not in sys.modules and namespace not in sys.modules


def test_two_namespaces_get_their_own_module_copies(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "steps",
        {"counted.py": STEP_HEADER + "SEEN = []\nclass SyncC(SyncStep):\n    observes = 'C'\n"},
    )
    (one,), _ = discover(folder, SyncStep, namespace=f"{namespace}.one")
    (two,), _ = discover(folder, SyncStep, namespace=f"{namespace}.two")
    assert one is not two
    sys.modules[one.__module__].SEEN.append(1)
    assert sys.modules[two.__module__].SEEN == []


def test_bad_namespace_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="namespace"):
        discover(tmp_path, SyncStep, namespace="not a name")


# -- instantiate / StepFactory --------------------------------------------------------
class _NoArgs(PullStep):
    def __init__(self) -> None:
        super().__init__(observed_model="OLTDevice")


class _Named(SyncStep):
    observes = "A"

    def __init__(self, model_accessor: Any = None) -> None:
        super().__init__(model_accessor=model_accessor)
        self.got = model_accessor


class _Plain:
    """Not derived from our bases, with a logger of its own."""

    def __init__(self, log: Any) -> None:
        self.log = log


class _Everything(EventStep):
    topics = ["t"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kwargs = kwargs


def test_instantiate_passes_only_accepted_arguments() -> None:
    accessor, log = object(), logging.getLogger("x")
    step = instantiate(_NoArgs, model_accessor=accessor, log=log, driver="d")
    assert step.observed_model == "OLTDevice"
    assert step.model_accessor is accessor  # set afterwards: it was None

    named = instantiate(_Named, model_accessor=accessor, log=log, driver="d")
    assert named.got is accessor

    everything = instantiate(_Everything, model_accessor=accessor, log=log, driver="d")
    assert everything.kwargs == {"model_accessor": accessor, "log": log, "driver": "d"}
    assert everything.log is log and everything.logger is log

    plain = instantiate(_Plain, model_accessor=accessor, log=log)
    assert plain.log is log and plain.logger is log and plain.model_accessor is accessor


def test_instantiate_keeps_attributes_the_constructor_set() -> None:
    own = logging.getLogger("own")
    plain = instantiate(_Plain, log=own, model_accessor=None)
    other = logging.getLogger("other")
    subclass = type("P", (_Plain,), {"__init__": lambda self: _Plain.__init__(self, own)})
    plain2 = instantiate(subclass, log=other)
    assert plain.log is own
    assert plain2.log is own and plain2.logger is other


def test_step_factory_makes_fresh_instances() -> None:
    accessor = object()
    factory = StepFactory(_Named, "/x/steps.py", {"model_accessor": accessor})
    first, second = factory.make(), factory.make()
    assert first is not second
    assert first.got is accessor and second.got is accessor
    assert factory.name == "_Named"
    assert hash(factory) == hash(StepFactory(_Named, "/x/steps.py", {}))


def test_discover_factories_carry_path_and_kwargs(tmp_path: Path, namespace: str) -> None:
    folder = _write(
        tmp_path / "pull",
        {
            "pull.py": STEP_HEADER
            + """
            class MyPull(PullStep):
                def __init__(self):
                    super().__init__(observed_model="X")
            """
        },
    )
    accessor = object()
    (factory,), errors = discover_factories(
        folder, PullStep, namespace=namespace, kwargs={"model_accessor": accessor}
    )
    assert errors == []
    assert factory.path == str(folder / "pull.py") and factory.name == "MyPull"
    step = factory.make()
    assert step.model_accessor is accessor and step.observed_model == "X"


def test_abstract_step_mark_is_not_inherited() -> None:
    @abstract_step
    class Base(SyncStep):
        pass

    class Child(Base):
        observes = "A"

    assert is_abstract_step(Base) and not is_abstract_step(Child)


# -- load_synchronizer --------------------------------------------------------------
XPROTO = """
message Person (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""

CONVENIENCE = """
from xosapi.orm import ORMWrapper, register_convenience_wrapper

class ORMWrapperPerson(ORMWrapper):
    @property
    def full_name(self):
        return self.first_name + " " + self.last_name

register_convenience_wrapper("Person", ORMWrapperPerson)
"""

SYNC = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import Person, model_accessor
from xosconfig import Config

NAME = Config.get("name")
BOUND = model_accessor

class SyncPerson(SyncStep):
    observes = Person

    def sync_record(self, o):
        pass
"""


def _synchronizer(root: Path, steps: dict[str, str] | None = None) -> Config:
    _write(root / "models", {"person.xproto": XPROTO})
    _write(root / "models" / "convenience", {"person.py": CONVENIENCE})
    _write(root / "steps", steps if steps is not None else {"sync_person.py": SYNC})
    return Config.from_dict(
        {"name": f"sync-{root.name}", "models_dir": "models", "steps_dir": "steps"}, base_dir=root
    )


def _accessor(config: Config) -> ModelAccessor:
    return ModelAccessor(Store("sqlite://", load_schema([config.get("models_dir")])))


def test_constructor_that_raises_is_a_load_error_and_the_others_load(tmp_path: Path) -> None:
    steps = {
        "sync_person.py": SYNC,
        "sync_broken.py": """
            from synchronizers.new_base.syncstep import SyncStep

            class SyncBroken(SyncStep):
                observes = "Person"

                def __init__(self, **kwargs):
                    super().__init__(**kwargs)
                    raise ZeroDivisionError("division by zero")
            """,
        "sync_unknown.py": """
            from synchronizers.new_base.syncstep import SyncStep

            class SyncUnknown(SyncStep):
                observes = "Nobody"
            """,
        "sync_import.py": """
            from synchronizers.new_base.modelaccessor import Nobody
            """,
    }
    config = _synchronizer(tmp_path, steps)
    loaded = load_synchronizer(config, _accessor(config))
    try:
        assert [f.name for f in loaded.sync_steps] == ["SyncPerson"]
        by_file = {Path(e.path).name: e for e in loaded.errors}
        assert set(by_file) == {"sync_broken.py", "sync_unknown.py", "sync_import.py"}
        broken = by_file["sync_broken.py"]
        assert broken.path == str(tmp_path / "steps" / "sync_broken.py")
        assert broken.cls == "SyncBroken"
        assert broken.message == "ZeroDivisionError: division by zero"
        assert str(broken) == f"{broken.path}: SyncBroken: ZeroDivisionError: division by zero"
        unknown = by_file["sync_unknown.py"]
        assert unknown.cls == "SyncUnknown" and "'Nobody'" in unknown.message and "Person" in unknown.message
        failed_import = by_file["sync_import.py"]
        assert failed_import.cls is None
        assert failed_import.message.startswith("UnknownModelImportError: cannot import name 'Nobody'")
        assert "Person" in failed_import.message
    finally:
        loaded.unload()


def test_two_synchronizers_do_not_interfere(tmp_path: Path) -> None:
    config_a = _synchronizer(tmp_path / "a")
    config_b = _synchronizer(tmp_path / "b")
    accessor_a, accessor_b = _accessor(config_a), _accessor(config_b)
    loaded_a = load_synchronizer(config_a, accessor_a)
    loaded_b = load_synchronizer(config_b, accessor_b)
    try:
        assert loaded_a.errors == [] and loaded_b.errors == []
        assert loaded_a.namespace != loaded_b.namespace
        (step_a,), (step_b,) = loaded_a.sync_steps, loaded_b.sync_steps
        assert step_a.cls is not step_b.cls
        module_a, module_b = sys.modules[step_a.cls.__module__], sys.modules[step_b.cls.__module__]
        assert module_a.BOUND is accessor_a and module_b.BOUND is accessor_b
        assert module_a.Person is accessor_a.Person and module_b.Person is accessor_b.Person
        assert module_a.NAME == "sync-a" and module_b.NAME == "sync-b"
        assert step_a.make().model_accessor is accessor_a
        assert step_b.make().model_accessor is accessor_b
        # Each accessor got its own wrapper registration.
        assert "Person" in accessor_a.wrappers and "Person" in accessor_b.wrappers
        assert accessor_a.wrappers.get("Person") is not accessor_b.wrappers.get("Person")
        accessor_a.Person(first_name="Ada", last_name="Lovelace").save()
        assert [p.full_name for p in accessor_a.Person.objects.all()] == ["Ada Lovelace"]
        assert accessor_b.Person.objects.count() == 0
    finally:
        loaded_a.unload()
        loaded_b.unload()


def test_explicit_namespace_is_used(tmp_path: Path) -> None:
    config = _synchronizer(tmp_path)
    loaded = load_synchronizer(config, _accessor(config), namespace="test_discovery_explicit")
    try:
        assert loaded.namespace == "test_discovery_explicit"
        assert loaded.sync_steps[0].cls.__module__ == "test_discovery_explicit.steps.sync_person"
        assert "test_discovery_explicit.convenience.person" in sys.modules
    finally:
        loaded.unload()
    assert "test_discovery_explicit.steps.sync_person" not in sys.modules


def test_unconfigured_folders_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "person.xproto").write_text(XPROTO)
    config = Config.from_dict({"name": "bare", "models_dir": "models"}, base_dir=tmp_path)
    loaded = load_synchronizer(config, _accessor(config))
    assert loaded.factories == [] and loaded.errors == []


def test_a_pull_step_imports_a_module_of_the_steps_folder(tmp_path: Path) -> None:
    helper = "def person_label(p):\n    return p.name.upper()\n"
    _synchronizer(tmp_path, {"sync_person.py": SYNC, "person_helpers.py": helper})
    _write(
        tmp_path / "pull_steps",
        {
            "pull_people.py": """
            from xossynchronizer.pull_steps.pullstep import PullStep
            from person_helpers import person_label

            class PullPeople(PullStep):
                label = staticmethod(person_label)
            """
        },
    )
    data = {"name": "pulling", "models_dir": "models", "steps_dir": "steps", "pull_steps_dir": "pull_steps"}
    config = Config.from_dict(data, base_dir=tmp_path)
    loaded = load_synchronizer(config, _accessor(config))
    try:
        assert [str(e) for e in loaded.errors] == []
        [pull] = loaded.pull_steps
        person = types.SimpleNamespace(name="ada")  # the helper only reads .name
        assert getattr(pull.cls, "label")(person) == "ADA"  # noqa: B009
        assert "person_helpers" not in sys.modules
    finally:
        loaded.unload()


def test_describe_gives_an_error_its_type_once_on_one_line() -> None:
    class KafkaTimeoutError(Exception):
        pass

    # kafka-python's messages start with their type: it is not repeated.
    text = "KafkaTimeoutError: Failed to update metadata after 2.0 secs."
    assert describe(KafkaTimeoutError(text)) == text
    assert describe(ValueError("bad\n   value")) == "ValueError: bad value"
    assert describe(ValueError()) == "ValueError"
