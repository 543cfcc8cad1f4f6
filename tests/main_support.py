"""Running ``python -m actors.main`` (the main job, ``core``) in subprocesses for start-up tests."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "steps_examples"

#: Linux capability numbers (linux/capability.h) and prctl's PR_CAPBSET_DROP.
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_PR_CAPBSET_DROP = 24


def environment() -> dict[str, str]:
    """The environment of a child: this tree first on the path, no ``ACTORS_*`` overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["ACTORS_HTTP__ADDRESS"] = "127.0.0.1:0"  # the HTTP endpoint on a free port, never 8080
    return env


def write_config(folder: Path, *, name: str = "config.yaml", **changes: Any) -> Path:
    """The steps_examples synchronizer (no event steps, API off) with ``changes``, written to ``folder``.

    A change whose value is ``None`` removes that key.
    """
    data = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    for key in ("models_dir", "steps_dir", "pull_steps_dir", "model_policies_dir"):
        data[key] = str(EXAMPLES / data[key])
    data.pop("event_steps_dir")
    data["data_dir"] = str(folder / "data")
    data["api"] = {"enabled": False}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def _without_file_override() -> None:  # pragma: no cover - runs in the child before exec
    """Drop the capabilities that let root ignore file permissions (for this child only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_main(
    args: Sequence[str], *, timeout: float = 60, obey_permissions: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m actors.main ARGS`` to its end.

    ``obey_permissions``: when run as root, the child loses the capabilities that
    bypass file permissions, so a folder without write permission is read-only to it
    as to any user.
    """
    preexec = _without_file_override if obey_permissions and os.geteuid() == 0 else None
    return subprocess.run(
        [sys.executable, "-m", "actors.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
        preexec_fn=preexec,  # only the prctl call, before exec
    )


class MainProcess:
    """A running ``python -m actors.main ...``, its stderr (and stdout) in a log file."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "actors.main", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment(),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_line(self, needle: str, timeout: float = 60) -> None:
        """Wait until the output has ``needle``; fail at once if the process ends first."""

        def seen() -> bool:
            if needle in self.text():
                return True
            assert self.process.poll() is None, f"ended with {self.process.returncode}:\n{self.text()}"
            return False

        wait_for(seen, timeout=timeout, description=f"{needle!r} in {self.log.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def error_line(stderr: str) -> str:
    """The one line of a start that failed: asserts it is alone (no traceback, nothing else)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]
