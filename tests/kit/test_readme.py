"""The README works as written: its code blocks run, its commands exist.

Each fenced block of README.md (and of the examples' READMEs) is checked:

- every ``python`` block compiles (handler fragments included);
- a block after ``<!-- readme: run -->`` is a whole program: it runs in a fresh
  folder in a subprocess (and its ``async def main`` is called, if it has one);
- blocks after ``<!-- readme: file NAME -->`` are written to NAME in one folder;
  a ``<!-- readme: run-pytest -->`` block then runs pytest there, as a user would;
- every shell command is checked to exist: ``python3 dev.py X`` is a dev.py
  command, ``.venv/bin/python -m M`` an importable module, ``.venv/bin/P`` an
  installed program; a bare ``python``/``pip`` (which needs the project's venv,
  and says nothing of it) is refused. Blocks marked ``run`` run for real.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
READMES = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]
OPEN = re.compile(r"(?P<indent>\s*)```(?P<lang>[a-z]*)")
MARK = re.compile(r"<!-- readme: (?P<mark>[^>]*?) -->")


@attrs.frozen
class Block:
    path: Path
    line: int
    lang: str
    mark: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file (fences may be indented, as in lists)."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = OPEN.fullmatch(lines[i])
        if m is None:
            i += 1
            continue
        indent, lang = m["indent"], m["lang"]
        mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : j])
        out.append(Block(path, i + 2, lang, mark["mark"].strip() if mark else "", body))
        i = j + 1
    return out


ALL = [b for p in READMES for b in blocks(p)]


def test_the_readme_has_the_blocks_this_runner_expects() -> None:
    main = [b for b in ALL if b.path.name == "README.md" and b.path.parent == ROOT]
    marks = [b.mark for b in main if b.mark]
    assert "run" in marks
    assert "file trial.py" in marks
    assert "file test_trial.py" in marks
    assert "run-pytest" in marks
    assert len([b for b in main if b.lang == "python"]) >= 7


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "python"], ids=lambda b: b.where)
def test_every_python_block_compiles(block: Block) -> None:
    compile(block.body, block.where, "exec")


def run_program(source: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "readme_block.py"
    script.write_text(
        source + "\n\nif 'main' in globals():\n    import anyio as _anyio\n\n    _anyio.run(main)\n"
    )
    return subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", [b for b in ALL if b.lang == "python" and b.mark == "run"], ids=lambda b: b.where
)
def test_whole_programs_run(block: Block, tmp_path: Path) -> None:
    done = run_program(block.body, tmp_path)
    assert done.returncode == 0, f"{block.where}:\n{done.stderr}"


def test_the_first_example_prints_what_it_says(tmp_path: Path) -> None:
    (first,) = [b for b in ALL if b.lang == "python" and b.mark == "run" and "class Account" in b.body]
    done = run_program(first.body, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["105", "105"]  # the ask's result, then the query
    assert (tmp_path / "bank.db").exists()


@pytest.mark.slow
def test_the_testing_section_runs_as_a_users_project(tmp_path: Path) -> None:
    main = [b for b in ALL if b.path == ROOT / "README.md"]
    for b in main:
        if b.mark.startswith("file "):
            (tmp_path / b.mark.removeprefix("file ")).write_text(b.body + "\n")
    (run,) = [b for b in main if b.mark == "run-pytest"]
    (command,) = commands(run.body)
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, *argv[1:], "-q", "-p", "no:cacheprovider", "--durations=0", "--durations-min=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    # "under 0.1 s" each, as the README says: pytest's own timing of each call
    calls = [float(m) for m in re.findall(r"^([\d.]+)s call", done.stdout, re.M)]
    assert len(calls) == 2, done.stdout
    assert max(calls) < 0.5  # margin for a loaded CI machine; typically 0.05-0.1 s
    assert time.monotonic() - began < 60


# ---------------------------------------------------------------- shell commands


def commands(body: str) -> list[str]:
    """The commands of a shell block: comments, prompts' output and blank lines dropped."""
    out: list[str] = []
    joined = body.replace("\\\n", " ")  # backslash-continued lines are one command
    for raw in joined.splitlines():
        line = raw.split("  #")[0].split(" # ")[0].strip()
        if not line or line.startswith("#"):
            continue
        out.append(line.removeprefix("$ "))
    return out


def dev_commands() -> set[str]:
    return set(re.findall(r'what == "([a-z]+)"', (ROOT / "dev.py").read_text()))


def check_command(command: str) -> str | None:
    """Why ``command`` would not work on a fresh clone (after dev.py made .venv), or None."""
    argv = shlex.split(command)
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # VAR=value prefixes
        argv = argv[1:]
    if not argv:
        return None
    prog = argv[0]
    if prog == "python3" and argv[1:2] == ["dev.py"]:
        return None if argv[2] in dev_commands() else f"dev.py has no command {argv[2]!r}"
    if prog in ("python", "python3", "pip", "pytest", "uvicorn", "actors"):
        return f"{prog!r} is not the project's: write .venv/bin/{prog}"
    if prog == ".venv/bin/python":
        if argv[1:2] == ["-m"]:
            module = argv[2]
            return None if importlib.util.find_spec(module) else f"no module {module!r}"
        return None
    if prog.startswith(".venv/bin/"):
        name = prog.removeprefix(".venv/bin/")
        if name == "uvicorn":  # the http extra, which the README says to install first
            return None
        return None if (VENV_BIN / name).exists() else f"{prog} is not installed by the project"
    if prog in ("curl", "sqlite3", "git", "cd", "kill"):
        return None
    return f"unknown program {prog!r}"


SHELL = [b for b in ALL if b.lang in ("sh", "bash", "console")]
TRANSCRIPTS = [b for b in ALL if b.lang == "" and "\n$ " in "\n" + b.body]


@pytest.mark.parametrize("block", SHELL + TRANSCRIPTS, ids=lambda b: b.where)
def test_every_shell_command_exists(block: Block) -> None:
    if block.lang:
        found = commands(block.body)
    else:  # a transcript: its commands are the lines after a "$ " prompt
        found = [line[2:] for line in block.body.splitlines() if line.startswith("$ ")]
    assert found
    problems = [f"{c}: {why}" for c in found if (why := check_command(c))]
    assert problems == [], block.where


@pytest.mark.parametrize(
    "command", ["python -m examples.cart", "pip install x", "python3 dev.py nope", ".venv/bin/python -m nope"]
)
def test_the_checker_catches_commands_that_would_fail(command: str) -> None:
    assert check_command(command) is not None


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in SHELL if b.mark == "run"], ids=lambda b: b.where)
def test_marked_commands_run(block: Block) -> None:
    for command in commands(block.body):
        argv = shlex.split(command)
        assert argv[0].startswith(".venv/bin/")
        exe = sys.executable if argv[0] == ".venv/bin/python" else str(VENV_BIN / Path(argv[0]).name)
        done = subprocess.run([exe, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command}:\n{done.stderr}"


def test_version_command_and_attribute_agree() -> None:
    from importlib.metadata import version

    import actors

    done = subprocess.run(
        [str(VENV_BIN / "actors"), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == f"actors {actors.__version__}"
    assert actors.__version__ == version("durable-entity-actors")
    assert f"## [{actors.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
