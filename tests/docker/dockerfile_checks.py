"""Checks of a Dockerfile and its build context without Docker.

A small parser (continuation lines, comments, the ``escape`` directive, exec and shell
forms) turns the Dockerfile into instructions; each check takes them and returns a list of
problems, empty when the file passes, so a test can feed it a broken variant and see it
rejected. The ignore-file matchers follow Docker's and git's rules for the pattern forms
the repository uses (``**``, ``*``, ``?``, ``!`` negation, anchored and directory patterns).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import tomllib
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

from compose_checks import is_pinned


class Instruction:
    def __init__(self, keyword: str, args: str, line: int) -> None:
        self.keyword, self.args, self.line = keyword, args, line

    def __repr__(self) -> str:
        return f"{self.keyword} {self.args} (line {self.line})"

    def words(self) -> list[str]:
        """Arguments as words: JSON (exec) form or shell-like words."""
        if self.args.startswith("["):
            return json.loads(self.args)
        return shlex.split(self.args)

    def flags_and_rest(self) -> tuple[dict[str, str], list[str]]:
        flags, rest = {}, []
        for word in self.words():
            if word.startswith("--") and not rest:
                key, _, value = word[2:].partition("=")
                flags[key] = value
            else:
                rest.append(word)
        return flags, rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments, blank lines and directives dropped."""
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives come first, before any other line
        match = re.match(r"#\s*(\w+)\s*=\s*(\S+)\s*$", line)
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not buffer:
            start = number
        if stripped.endswith(escape):
            buffer += stripped[: -len(escape)].rstrip() + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    if buffer:
        raise ValueError("the Dockerfile ends inside a continued instruction")
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each stage, its FROM first (global ARGs before the first FROM are left out)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        elif not out:
            if ins.keyword != "ARG":
                raise ValueError(f"instruction before the first FROM: {ins}")
            continue
        out[-1].append(ins)
    return out


def from_image(ins: Instruction) -> tuple[str, str | None]:
    _, rest = ins.flags_and_rest()
    alias = rest[2] if len(rest) >= 3 and rest[1].upper() == "AS" else None
    return rest[0], alias


def env_pairs(ins: Instruction) -> dict[str, str]:
    words = shlex.split(ins.args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def stage_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            env.update(env_pairs(ins))
    return env


def copy_targets(stage: list[Instruction]) -> list[tuple[Instruction, list[str], str, str]]:
    """(instruction, sources, absolute destination, working directory) of each COPY/ADD of a stage.

    Sources are empty for ``COPY --from=...`` (they are paths in another stage or image).
    """
    workdir, out = "/", []
    for ins in stage:
        if ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, ins.args)
        elif ins.keyword in ("COPY", "ADD"):
            flags, rest = ins.flags_and_rest()
            *sources, dest = rest
            target = posixpath.normpath(posixpath.join(workdir, dest))
            out.append((ins, sources if "from" not in flags else [], target, workdir))
    return out


def shell_commands(run_args: str) -> list[list[str]]:
    """The simple commands of a RUN (split on && ; || |), as words; RUN flags dropped."""
    words = shlex.split(run_args)
    while words and words[0].startswith("--"):
        words.pop(0)
    commands, current = [], []
    for word in words:
        if word in ("&&", ";", "||", "|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def pip_installs(instructions: list[Instruction]) -> list[tuple[Instruction, list[str]]]:
    out = []
    for ins in instructions:
        if ins.keyword == "RUN":
            out += [(ins, c) for c in shell_commands(ins.args) if re.search(r"\bpip3?\b.*\binstall\b", " ".join(c))]
    return out


# Ignore files --------------------------------------------------------------------------------
def glob_regex(pattern: str) -> str:
    """Regex of a dockerignore/gitignore glob: ``**`` spans directories, ``*`` and ``?`` do not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += r"(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += r".*"
            i += 2
        elif pattern[i] == "*":
            out += r"[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += r"[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out


def ignore_patterns(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(relpath: str, patterns: list[str]) -> bool:
    """Whether ``relpath`` is left out of the build context (it or a parent matches, last match wins)."""
    parts = posixpath.normpath(relpath).split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = glob_regex(posixpath.normpath(pattern.lstrip("!").lstrip("/")))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def gitignored(relpath: str, patterns: list[str]) -> bool:
    """Whether ``relpath`` (a file) is ignored by a root .gitignore with ``patterns``."""
    ignored = False
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!")
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        pattern = pattern.lstrip("/")
        for i, prefix in enumerate(prefixes):
            if dir_only and i == len(prefixes) - 1:
                continue  # a directory pattern never matches the file itself
            subject = prefix if anchored else prefix.rsplit("/", 1)[-1]
            if re.fullmatch(glob_regex(pattern), subject):
                ignored = not negate
    return ignored


# Checks --------------------------------------------------------------------------------------
def base_image_problems(instructions: list[Instruction]) -> list[str]:
    """Each FROM and ``COPY --from`` names an earlier stage or a pinned image; stage names are unique."""
    problems, aliases = [], []
    for index, stage in enumerate(stages(instructions)):
        image, alias = from_image(stage[0])
        if image not in aliases and not is_pinned(image):
            problems.append(f"line {stage[0].line}: base image {image!r} is neither an earlier stage nor pinned")
        for ins in stage[1:]:
            source = ins.flags_and_rest()[0].get("from") if ins.keyword == "COPY" else None
            if source is None or source in aliases or is_pinned(source):
                continue
            if not (source.isdigit() and int(source) < index):
                problems.append(f"line {ins.line}: COPY --from={source} is neither an earlier stage nor pinned")
        if alias:
            if alias in aliases:
                problems.append(f"line {stage[0].line}: stage name {alias!r} is used twice")
            aliases.append(alias)
    return problems


def copy_source_problems(instructions: list[Instruction], context: Path, patterns: list[str]) -> list[str]:
    """Each COPY/ADD source exists in the build context and the ignore file keeps it there."""
    problems = []
    for stage in stages(instructions):
        for ins, sources, _, _ in copy_targets(stage):
            for source in sources:
                if re.match(r"[a-z]+://", source):
                    continue  # ADD of a URL
                relative = posixpath.normpath(source.lstrip("/"))
                if relative.startswith(".."):
                    problems.append(f"line {ins.line}: {source} is outside the build context")
                elif not list(context.glob(relative)) and relative != ".":
                    problems.append(f"line {ins.line}: {source} does not exist in the build context")
                elif relative != "." and dockerignored(relative, patterns):
                    problems.append(f"line {ins.line}: {source} is excluded by the .dockerignore")
    return problems


def package_problems(instructions: list[Instruction], context: Path) -> list[str]:
    """``pip install .`` sees every package of pyproject's ``packages.find`` and the files it reads.

    Before the RUN that installs the project, its stage must have copied pyproject.toml,
    the readme and each top-level package that ``[tool.setuptools.packages.find]`` includes:
    setuptools skips a missing one silently, and the image's console script then fails.
    """
    pyproject = tomllib.loads((context / "pyproject.toml").read_text())
    include = pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include", ["*"])
    packages = sorted(
        p.name
        for p in context.iterdir()
        if (p / "__init__.py").is_file() and any(fnmatchcase(p.name, g) for g in include)
    )
    needed = ["pyproject.toml", pyproject["project"].get("readme", "README.md"), *packages]
    problems = []
    for stage in stages(instructions):
        workdir, landed = "/", set()
        for ins in stage:
            if ins.keyword == "WORKDIR":
                workdir = posixpath.join(workdir, ins.args)
            elif ins.keyword in ("COPY", "ADD") and "from" not in ins.flags_and_rest()[0]:
                landed |= _landed_paths(ins, workdir, context)
            elif ins.keyword == "RUN":
                for command in shell_commands(ins.args):
                    if re.search(r"\bpip3?\b.*\binstall\b", " ".join(command)) and "." in command:
                        missing = [
                            n for n in needed if posixpath.join(workdir, n) not in landed and workdir not in landed
                        ]
                        if missing:
                            problems.append(
                                f"line {ins.line}: `pip install .` runs before {', '.join(missing)} is copied"
                            )
    return problems


def _landed_paths(ins: Instruction, workdir: str, context: Path) -> set[str]:
    """Where a COPY puts its sources: a directory's contents go to the destination, files into it."""
    *sources, dest = ins.flags_and_rest()[1]
    target = posixpath.normpath(posixpath.join(workdir, dest))
    into = dest.endswith("/") or dest == "." or len(sources) > 1
    out = set()
    for source in sources:
        if (context / source).is_dir():
            out.add(target)
        else:
            out.add(posixpath.join(target, posixpath.basename(source.rstrip("/"))) if into else target)
    return out


def user_problems(instructions: list[Instruction]) -> list[str]:
    final = stages(instructions)[-1]
    users = [ins.args.split(":")[0] for ins in final if ins.keyword == "USER"]
    if not users:
        return ["the final stage sets no USER: the container would run as root"]
    if users[-1] in ("root", "0"):
        return [f"the final USER is {users[-1]}"]
    return []


def entrypoint_problems(
    instructions: list[Instruction], scripts: set[str], parse_argv: Callable[[list[str]], object]
) -> list[str]:
    """ENTRYPOINT runs a console script of the project in exec form; CMD is arguments it accepts."""
    final = stages(instructions)[-1]
    entrypoints = [ins for ins in final if ins.keyword == "ENTRYPOINT"]
    cmds = [ins for ins in final if ins.keyword == "CMD"]
    if not entrypoints:
        return ["the final stage has no ENTRYPOINT"]
    entrypoint = entrypoints[-1]
    if not entrypoint.args.startswith("["):
        return [f"line {entrypoint.line}: ENTRYPOINT in shell form does not pass signals to the process"]
    words = entrypoint.words()
    problems = []
    if posixpath.basename(words[0]) not in scripts:
        problems.append(f"line {entrypoint.line}: ENTRYPOINT {words[0]} is not a console script of the project")
    if cmds:
        try:
            parse_argv(words[1:] + cmds[-1].words())
        except SystemExit:
            problems.append(f"line {cmds[-1].line}: CMD {cmds[-1].args} is not a valid command line")
    return problems


def env_path_problems(instructions: list[Instruction], prefix: str = "GRAPHREC_") -> list[str]:
    """Each absolute path a ``<prefix>*`` ENV names was copied into the image or lies on a VOLUME."""
    final = stages(instructions)[-1]
    copied = [dest for _, _, dest, _ in copy_targets(final)]
    volumes = [word for ins in final if ins.keyword == "VOLUME" for word in ins.words()]
    problems = []
    for key, value in stage_env(final).items():
        if not key.startswith(prefix) or not value.startswith("/"):
            continue
        under = lambda roots, v=value: any(v == r or v.startswith(r.rstrip("/") + "/") for r in roots)  # noqa: E731
        if not under(copied) and not under(volumes):
            problems.append(f"ENV {key}={value}: nothing is copied there and no VOLUME holds it")
    return problems
