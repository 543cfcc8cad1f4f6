"""Every code block of README.md and docs/*.md runs as written.

Each fenced block is one test, named ``<file>:<line>``. A file's blocks run in order in
one fresh copy of the repository (a temporary folder), so a later block sees the files
and objects an earlier one made:

* ``sh``/``bash``/``shell``/``console``: run by bash in the copy. Lines starting ``$ ``
  are the commands (``\\`` continues one) and the other lines are their output; a block
  without ``$`` lines is a script. Commands run in a virtual environment of this session
  (``pip install`` goes there, not into the developer's environment), with the copy first
  on ``PYTHONPATH``.
* ``python``: executed in one Python process per file (its blocks share a namespace, as a
  reader's session would), in the copy. ``>>>``/``...`` prompts are stripped and the
  lines after them, their output, are not compared.
* ``yaml``: parsed; a mapping is validated as a configuration by ``actors.config``
  (``name`` added when the block has none), unless the marker says ``yaml-only``.
* ``json``: parsed. ``ini``: parsed by configparser. ``proto``: parsed by the xproto parser.
* ``text``: output, diagrams, messages: not run.

A block without a language fails the test: say what it is. An HTML comment on the line
right before a block changes what happens to it:

* ``<!-- docs-test: skip REASON -->``: not run (the test is skipped with the reason);
* ``<!-- docs-test: file PATH -->``: the block is written to PATH in the copy (a Python
  file is then only compiled: the framework loads it);
* ``<!-- docs-test: runs-until-stopped [until=TEXT] [keep] -->``: a command that runs
  until Ctrl-C: started, checked to print TEXT (default ``synchronizer started``) within
  60 s, then stopped with SIGINT (``keep``: left running for the file's later blocks);
* ``<!-- docs-test: yaml-only REASON -->``: a YAML block that is parsed, not validated;
* ``<!-- docs-test: in DIR -->``: the block runs in the folder DIR of the copy (a block
  written as run from a synchronizer's folder: ``in steps_examples``; for YAML, the
  folder relative paths are resolved against).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
NOT_RUN = {"text"}
KNOWN = SHELL | NOT_RUN | {"python", "yaml", "json", "ini", "proto"}
BLOCK_TIMEOUT = 120.0
START_TIMEOUT = 60.0
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?P<args>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")


@dataclass
class Block:
    """One fenced code block of a markdown file."""

    doc: Path
    line: int  # the line of the opening fence, 1-based
    info: str
    body: str
    marker: str = ""
    marker_args: str = ""

    @property
    def where(self) -> str:
        """``docs/api.md:42``."""
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def describe(self) -> str:
        """The block as it stands in the file, for failure messages."""
        return f"{self.where}: ```{self.info}\n{self.body}```"


def parse_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc``, with the ``docs-test`` marker right before each."""
    lines = doc.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, indent = match.group("fence"), len(match.group("indent"))
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(
            line[indent:] if line[:indent].isspace() else line for line in lines[index + 1 : end]
        )
        block = Block(doc, index + 1, match.group("info").lower(), body + "\n" if body else "")
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marker = MARKER.match(lines[previous]) if previous >= 0 else None
        if marker:
            block.marker, block.marker_args = marker.group("kind"), marker.group("args")
        blocks.append(block)
        index = end + 1
    return blocks


ALL_BLOCKS = [block for doc in DOC_FILES for block in parse_blocks(doc)]


# -- the per-file session: a copy of the repository, a Python process, background commands -------


_KERNEL = r"""
import json, os, sys, traceback
requests, answers = os.fdopen(int(sys.argv[1]), "r"), os.fdopen(int(sys.argv[2]), "w")
namespace = {"__name__": "__main__"}
for request in requests:
    block = json.loads(request)
    here = os.getcwd()
    try:
        os.chdir(block["cwd"])
        exec(compile(block["code"], block["name"], "exec"), namespace)
        answer = {"ok": True}
    except BaseException:
        answer = {"ok": False, "error": traceback.format_exc(limit=8)}
    finally:
        os.chdir(here)
    sys.stdout.flush(); sys.stderr.flush()
    answers.write(json.dumps(answer) + "\n"); answers.flush()
"""


@dataclass
class DocRun:
    """The state shared by the blocks of one markdown file."""

    doc: Path
    venv_bin: Path
    workdir: Path = field(init=False)
    done: dict[int, str | None] = field(default_factory=dict)  # line -> None (passed) or the error
    kernel: subprocess.Popen[bytes] | None = None
    kernel_io: tuple[Any, Any] | None = None
    kernel_log: Path | None = None
    background: list[tuple[Block, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Copy the repository's files (tracked ones, or the tree without caches) to a new folder."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"docs-{self.doc.stem}-"))
        files = _tracked_files()
        for relative in files:
            target = self.workdir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)

    def env(self) -> dict[str, str]:
        """The environment of shell blocks and of the Python process."""
        env = dict(os.environ)
        env["PATH"] = f"{self.venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv_bin.parent)
        env["PYTHONPATH"] = str(self.workdir)
        env["PYTHONUNBUFFERED"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_BUILD_ISOLATION"] = "0"  # (sic) builds with this interpreter's setuptools, offline
        env.pop("ACTORS_CONFIG", None)
        return env

    def cwd(self, block: Block) -> Path:
        """Where ``block`` runs: the copy, or its folder named by ``in DIR``."""
        return self.workdir / block.marker_args if block.marker == "in" else self.workdir

    def python(self, block: Block, code: str) -> str | None:
        """Run ``code`` in this file's Python process; the traceback if it raised."""
        if self.kernel is None:
            self.kernel_log = self.workdir.parent / f"{self.workdir.name}-python.log"
            request_r, request_w = os.pipe()
            answer_r, answer_w = os.pipe()
            with self.kernel_log.open("wb") as log:
                self.kernel = subprocess.Popen(
                    [str(self.venv_bin / "python"), "-c", _KERNEL, str(request_r), str(answer_w)],
                    cwd=self.workdir,
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(request_r, answer_w),
                    start_new_session=True,
                )
            os.close(request_r)
            os.close(answer_w)
            self.kernel_io = (os.fdopen(request_w, "w"), os.fdopen(answer_r, "r"))
        assert self.kernel_io is not None
        requests, answers = self.kernel_io
        request = {"code": code, "name": block.where, "cwd": str(self.cwd(block))}
        requests.write(json.dumps(request) + "\n")
        requests.flush()
        line = _readline_with_deadline(answers, self.kernel, BLOCK_TIMEOUT)
        if line is None:
            return f"no answer within {BLOCK_TIMEOUT:.0f}s (or the process died)\n{self._kernel_output()}"
        answer = json.loads(line)
        return None if answer["ok"] else f"{answer['error']}\noutput:\n{self._kernel_output()}"

    def _kernel_output(self) -> str:
        if self.kernel_log is None:
            return ""
        return _tail(self.kernel_log.read_text(errors="replace"))

    def stop_background(self) -> None:
        """Stop the commands kept running (``runs-until-stopped ... keep``)."""
        for _, process, log in self.background:
            _stop(process)
            with contextlib.suppress(OSError):
                log.unlink()
        self.background.clear()

    def close(self) -> None:
        """Stop what still runs and delete the copy."""
        self.stop_background()
        if self.kernel is not None:
            assert self.kernel_io is not None
            for handle in self.kernel_io:
                with contextlib.suppress(OSError):
                    handle.close()
            _stop(self.kernel, grace=5.0)
            self.kernel = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.kernel_log is not None:
            with contextlib.suppress(OSError):
                self.kernel_log.unlink()


def _tracked_files() -> list[str]:
    """The repository's files as a fresh checkout has them."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
        return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]
    skip = {".git", ".tox", "data", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file() and not skip.intersection(path.relative_to(ROOT).parts)
    ]


def _readline_with_deadline(handle: Any, process: subprocess.Popen[bytes], timeout: float) -> str | None:
    """One line from ``handle`` (a pipe), or None when ``process`` dies or the deadline passes."""
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(handle, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = handle.readline()
                return line or None
            if process.poll() is not None:
                return None
    return None


def _stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGINT to the process group (Ctrl-C), SIGKILL after ``grace`` s; then to what is left of the group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# -- what each kind of block does ------------------------------------------------------------


def shell_script(body: str) -> str:
    """The commands of a shell block: its ``$`` lines (with continuations), or the whole block."""
    lines = body.splitlines()
    if not any(line.startswith("$ ") or line == "$" for line in lines):
        return body
    commands: list[str] = []
    continuing = False
    for line in lines:
        if continuing:
            commands.append(line)
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            continue
        continuing = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def python_code(body: str) -> str:
    """The code of a python block, without ``>>>``/``...`` prompts and the output after them."""
    lines = body.splitlines()
    if not any(line.startswith(">>>") for line in lines):
        return body
    code = [line[4:] for line in lines if line.startswith((">>> ", "... ")) or line in (">>>", "...")]
    return "\n".join(code) + "\n"


def run_shell(run: DocRun, block: Block) -> str | None:
    """Run a shell block; the failure, if any."""
    script = shell_script(block.body)
    if block.marker == "runs-until-stopped":
        return start_until(run, block, script)
    process = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=run.cwd(block),
        env=run.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return (
            f"did not finish within {BLOCK_TIMEOUT:.0f}s (a command that runs until stopped needs the marker)"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what the commands left behind
    if process.returncode != 0:
        return f"exit status {process.returncode}\nstdout:\n{_tail(stdout)}\nstderr:\n{_tail(stderr)}"
    return None


def start_until(run: DocRun, block: Block, script: str) -> str | None:
    """Start a command that runs until stopped, wait for its ready line, stop it (or keep it)."""
    args = block.marker_args
    until_match = re.search(r'until=(?:"([^"]*)"|(\S+))', args)
    until = (until_match.group(1) or until_match.group(2)) if until_match else "synchronizer started"
    keep = bool(re.search(r"(^|\s)keep(\s|$)", args))
    log = run.workdir.parent / f"{run.workdir.name}-{block.line}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=run.cwd(block),
            env=run.env(),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        output = log.read_text(errors="replace")
        if until in output:
            break
        if process.poll() is not None:
            log.unlink()
            return (
                f"exited with status {process.returncode} before printing {until!r}\noutput:\n{_tail(output)}"
            )
        if time.monotonic() > deadline:
            _stop(process)
            log.unlink()
            return f"did not print {until!r} within {START_TIMEOUT:.0f}s\noutput:\n{_tail(output)}"
        time.sleep(0.1)
    if keep:
        run.background.append((block, process, log))
        return None
    _stop(process)
    output = log.read_text(errors="replace")
    log.unlink()
    if "Traceback (most recent call last)" in output:
        return f"printed a traceback after {until!r} or when stopped\noutput:\n{_tail(output)}"
    return None


def check_yaml(run: DocRun, block: Block) -> str | None:
    """Parse a YAML block and validate a mapping as a configuration."""
    try:
        data = yaml.safe_load(block.body)
    except yaml.YAMLError as exc:
        return f"does not parse as YAML: {exc}"
    if block.marker == "yaml-only" or not isinstance(data, dict):
        return None
    from actors.config import Config, ConfigError

    config = {"name": "docs-test", **data}
    try:
        Config.from_dict(config, base_dir=run.cwd(block))
    except ConfigError as exc:
        return f"not a valid configuration: {exc}"
    return None


def check_proto(block: Block) -> str | None:
    """Parse an xproto block."""
    from actors.models import parse_xproto

    try:
        parse_xproto(block.body, filename=block.where)
    except Exception as exc:
        return f"does not parse as xproto: {exc}"
    return None


def run_block(run: DocRun, block: Block) -> str | None:
    """Do what the block's language and marker say; the failure, if any."""
    if block.marker == "file":
        target = run.workdir / block.marker_args
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body)
    if block.info in SHELL:
        return run_shell(run, block)
    if block.info == "python":
        if block.marker == "file":  # a module the framework loads: it must compile
            try:
                compile(block.body, block.where, "exec")
            except SyntaxError as exc:
                return f"does not compile: {exc}"
            return None
        return run.python(block, python_code(block.body))
    if block.info == "yaml":
        return check_yaml(run, block)
    if block.info == "json":
        try:
            json.loads(block.body)
        except ValueError as exc:
            return f"does not parse as JSON: {exc}"
        return None
    if block.info == "ini":
        try:
            configparser.ConfigParser().read_string(block.body)
        except configparser.Error as exc:
            return f"does not parse as INI: {exc}"
        return None
    if block.info == "proto":
        return check_proto(block)
    return None


# -- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docs_venv() -> Iterator[Path]:
    """A virtual environment over this interpreter's packages, for the blocks' commands."""
    folder = Path(tempfile.mkdtemp(prefix="docs-venv-"))
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    # pip and setuptools of this interpreter, installing into the venv (its sys.prefix).
    pip = folder / "bin" / "pip"
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    yield folder / "bin"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def doc_runs(docs_venv: Path) -> Iterator[dict[Path, DocRun]]:
    """One :class:`DocRun` per markdown file, made when its first block runs."""
    runs: dict[Path, DocRun] = {}
    yield runs
    for run in runs.values():
        run.close()


def _run_upto(runs: dict[Path, DocRun], venv_bin: Path, block: Block) -> str | None:
    """Run the blocks of ``block``'s file up to it (those not run yet), then it; its failure."""
    for other in runs.values():
        if other.doc != block.doc:
            other.stop_background()  # commands kept running stop when their file is done
    run = runs.get(block.doc)
    if run is None:
        run = runs[block.doc] = DocRun(block.doc, venv_bin)
    for earlier in ALL_BLOCKS:
        if earlier.doc != block.doc or earlier.line in run.done:
            continue
        if earlier.marker == "skip" or earlier.info in NOT_RUN or earlier.info not in KNOWN:
            run.done[earlier.line] = None
        else:
            run.done[earlier.line] = run_block(run, earlier)
        if earlier.line == block.line:
            break
    return run.done[block.line]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[block.where for block in ALL_BLOCKS])
def test_doc_block(block: Block, doc_runs: dict[Path, DocRun], docs_venv: Path) -> None:
    """The block runs as written (see the module docstring for what each kind does)."""
    if not block.info:
        pytest.fail(
            f"{block.where}: a code block without a language: name it (```sh, ```python, ```yaml, "
            f"```text for output or a diagram ...)\n{block.describe()}",
            pytrace=False,
        )
    if block.info not in KNOWN:
        pytest.fail(
            f"{block.where}: unknown block language {block.info!r} (known: {sorted(KNOWN)})", pytrace=False
        )
    if block.marker == "skip":
        if not block.marker_args:
            pytest.fail(f"{block.where}: docs-test: skip needs a reason", pytrace=False)
        pytest.skip(f"{block.where}: {block.marker_args}")
    if block.marker and block.marker not in {"skip", "file", "in", "runs-until-stopped", "yaml-only"}:
        pytest.fail(f"{block.where}: unknown docs-test marker {block.marker!r}", pytrace=False)
    if block.info in NOT_RUN:
        return
    error = _run_upto(doc_runs, docs_venv, block)
    if error:
        pytest.fail(
            f"{block.where}: the {block.info} block fails:\n{textwrap.indent(block.body, '    ')}\n{error}",
            pytrace=False,
        )


def test_a_regular_install_runs_the_examples(tmp_path: Path) -> None:
    """``pip install .`` (a wheel, not editable), then ``python -m actors.main`` finds steps_examples."""
    source = tmp_path / "checkout"
    for relative in _tracked_files():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACTORS_CONFIG")}
    # This interpreter's pip, installing into the venv; no build isolation: offline and fast.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import actors.cli as m; print(m.__file__); print(m.default_config_path())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(venv)), where  # the installed copy, not a checkout
    assert Path(where[1]).is_file(), where
    block = Block(ROOT / "README.md", 0, "sh", "python -m actors.main --no-api\n", "runs-until-stopped")
    run = DocRun.__new__(DocRun)
    run.doc, run.venv_bin, run.workdir, run.background = block.doc, venv / "bin", elsewhere, []
    run.env = lambda: {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}  # type: ignore[method-assign]
    error = start_until(run, block, block.body)
    assert error is None, error
