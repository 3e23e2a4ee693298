"""Turn YAML or JSON documents into typed resources, with errors that say where.

Each problem names the file, the document's index in it, the field path and what
was expected, so a user with a folder of fifty manifests finds the typo at once.
Every problem in the input is reported, and nothing is applied unless all are
valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hangar.errors import InvalidSpecError, InvalidYamlError, UnknownKindError, shown
from hangar.spec.base import API_VERSION, Resource
from hangar.spec.registry import KINDS

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_DOCUMENTS = 1000
MAX_PROBLEMS = 50


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases: ``*name`` refers to a node already read, so a few hundred
    bytes of nested aliases expand to gigabytes (the "billion laughs"). Manifests never
    need them; anchors alone are harmless and still accepted."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not accepted: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document."""

    source: str
    document: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}, document {self.document}"
        if self.path:
            where += f", at {self.path}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "document": self.document,
            "path": self.path,
            "message": self.message,
        }


def _field_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see `hangar schema KIND`)"
    if kind == "missing":
        return "required field is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _raise_problems(problems: list[Problem], cls: type[InvalidSpecError]) -> None:
    if not problems:
        return
    head = str(problems[0])
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    raise cls(
        head + more,
        hint="fix the documents and apply again; nothing was applied",
        details={"problems": [p.to_dict() for p in problems[:MAX_PROBLEMS]]},
    )


def parse_document(
    doc: Any, source: str = "<request>", index: int = 0
) -> tuple[Resource | None, list[Problem]]:
    """Validate one already-parsed document; return it or the problems found."""

    def problem(path: str, message: str) -> tuple[None, list[Problem]]:
        return None, [Problem(source, index, path, message)]

    if not isinstance(doc, dict):
        return problem("", f"expected a mapping with apiVersion and kind, got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind is None:
        return problem("kind", "required field is missing")
    if not isinstance(kind, str) or kind not in KINDS:
        return None, [
            Problem(
                source,
                index,
                "kind",
                f"unknown kind {shown(kind)}; known kinds: {', '.join(KINDS)}",
            )
        ]
    if doc.get("apiVersion") != API_VERSION:
        return problem(
            "apiVersion", f"expected {API_VERSION!r}, got {shown(doc.get('apiVersion'))}"
        )
    try:
        return KINDS[kind].model_validate(doc), []
    except ValidationError as exc:
        return None, [
            Problem(source, index, _field_path(e["loc"]), _describe(e)) for e in exc.errors()
        ]


def parse_documents(docs: Iterable[tuple[str, int, Any]]) -> list[Resource]:
    """Validate many documents; raise one error listing every problem."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str | None, str], str] = {}
    for source, index, doc in docs:
        resource, found = parse_document(doc, source, index)
        problems.extend(found)
        if resource is None:
            continue
        key = (resource.kind, resource.metadata.namespace, resource.name)
        if key in seen:
            problems.append(
                Problem(
                    source,
                    index,
                    "metadata.name",
                    f"{resource.kind} {resource.name!r} is declared twice (also in {seen[key]})",
                )
            )
            continue
        seen[key] = f"{source}, document {index}"
        resources.append(resource)
    if problems and all(p.path == "kind" for p in problems):
        _raise_problems(problems, UnknownKindError)
    _raise_problems(problems, InvalidSpecError)
    return resources


def read_yaml(text: str, source: str) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(source, index, document)`` for each non-empty YAML document in ``text``."""
    documents = []
    try:
        for document in yaml.load_all(text, Loader=_NoAliases):
            documents.append(document)
            if len(documents) > MAX_DOCUMENTS:
                raise InvalidYamlError(
                    f"{source}: more than {MAX_DOCUMENTS} documents",
                    hint="apply them in several parts; nothing was applied",
                )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc)[:300]
        raise InvalidYamlError(
            f"{source}: not valid YAML{where}: {problem}",
            hint="fix the syntax; nothing was applied",
            details={"source": source, "line": mark.line + 1 if mark else None},
        ) from None
    except RecursionError:
        raise InvalidYamlError(
            f"{source}: nested too deeply to read", hint="flatten it; nothing was applied"
        ) from None
    for index, doc in enumerate(documents):
        if doc is not None:
            yield source, index, doc


def manifest_files(path: Path) -> list[Path]:
    """The manifests under ``path``: the file itself, or every manifest in a folder tree."""
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
        )
    if not path.exists():
        raise InvalidSpecError(f"{path}: no such file or folder", hint="check the path given to -f")
    return [path]


def load_path(path: Path) -> list[Resource]:
    """Load every document of a file or folder, all valid or none."""
    docs: list[tuple[str, int, Any]] = []
    for file in manifest_files(path):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSpecError(f"{file}: cannot read: {exc}") from None
        docs.extend(read_yaml(text, str(file)))
    return parse_documents(docs)
