"""Knowledge bases at work: ingestion jobs that read, chunk, embed and index their
sources, and the searches agents and people run on them.

A base's folder sources are read only under the folders the administrator granted
its namespace (``hangar.admission``): resolved, never inside Hangar's own state, and
a link that leads out of the folder is not followed. URL sources and an OpenAI-style
embedder are reached through ``hangar.egress``, by the namespace's address policy.

A job runs in the process that was asked for it, one source after another, and keeps
its progress in the index beside the chunks (so any gateway can report it). A source
whose content has not changed since it was indexed is skipped; one that changed has
its chunks replaced in one transaction; a file gone from a folder source loses its
chunks. One unreadable source is an error on the job's list, never the job's end.

A job outlives its process: a worker process that finds it silent for
``STALE_SECONDS`` takes it over (one process wins; the state is replaced only if it is
still the one the silent process saved last) and runs it again, which skips what was
indexed already. Uploaded files are kept beside the job until it ends, for that. The
process that lost it, if it was only slow, finds its next save refused and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import hashlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from hangar.admission import Admission, Grants
from hangar.egress import AddressPolicy, fetch, http_client
from hangar.errors import (
    ConfigurationError,
    DocumentError,
    DocumentTooLargeError,
    HangarError,
    IngestionNotFoundError,
    InvalidRequestError,
    KnowledgeBaseNotFoundError,
    ToolError,
    ToolNotAllowedError,
)
from hangar.memory.chunking import chunk_text
from hangar.memory.documents import MAX_BYTES, Document, Upload, check_size, read_document
from hangar.memory.embedders import Embedder, LocalEmbedder, OpenAIEmbedder
from hangar.memory.index import Hit, KnowledgeIndex, SourceInfo, hybrid_search
from hangar.models.registry import Endpoint, resolve_endpoint
from hangar.spec.knowledge import EmbedderSpec, KnowledgeBase, KnowledgeBaseSpec, SourceSpec
from hangar.store.base import ResourceStore
from hangar.store.secrets import SecretResolver

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "vector", "text"]
HEARTBEAT_SECONDS = 10.0
"""How often a running job says it is alive, even inside one long file."""
STALE_SECONDS = 60.0
"""A running job silent this long died with its process: it is resumed, or reported
interrupted when it cannot be."""
RESUME_SECONDS = 15.0
"""How often a worker process looks for jobs to resume."""


class _TakenOver(Exception):
    """The job's stored state is no longer the one this process saved last."""


@dataclass
class _Job:
    """A job running here: its state, and the lock its saves take turns with."""

    namespace: str
    kb: str
    body: dict[str, Any]
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)
    lost: bool = False


Reader = Callable[[], Awaitable[Document]]
"""Reads one source when its turn comes; raises ``DocumentError`` if it cannot."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def digest(document: Document) -> str:
    return hashlib.sha256(document.text.encode()).hexdigest()


class Knowledge:
    """The knowledge bases of every namespace, over one index and the embedders their
    specs name (built once each)."""

    def __init__(
        self,
        store: ResourceStore,
        index: Callable[[], KnowledgeIndex],
        local: Embedder | None = None,
        admission: Admission | None = None,
        secrets: SecretResolver | None = None,
    ) -> None:
        self.store = store
        self._index_factory = index
        self._index: KnowledgeIndex | None = None
        self.local: Embedder = local or LocalEmbedder()
        self.admission = admission or Admission(None)
        self.secrets = secrets
        self._embedders: dict[tuple[EmbedderSpec, Endpoint], Embedder] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._resuming: asyncio.Task[None] | None = None

    @property
    def index(self) -> KnowledgeIndex:
        if self._index is None:
            self._index = self._index_factory()
        return self._index

    async def base(self, namespace: str, name: str) -> KnowledgeBaseSpec:
        stored = await self.store.get_resource(namespace, KnowledgeBase.KIND, name)
        if stored is None:
            raise KnowledgeBaseNotFoundError(
                f"knowledge base {name!r} not found in namespace {namespace!r}",
                hint="apply a KnowledgeBase with that name (`hangar get knowledgebases` lists "
                "them)",
                details={"knowledge_base": name},
            )
        return KnowledgeBaseSpec.model_validate(stored.spec)

    async def embedder(self, namespace: str, spec: EmbedderSpec) -> Embedder:
        """The base's embedder: the bundled one, or an endpoint reached by the
        namespace's grants (its key from a Secret or a granted server variable)."""
        if spec.provider == "local":
            return self.local
        if self.secrets is None:
            raise ConfigurationError("no secret store: remote embedders are unavailable here")
        endpoint = await resolve_endpoint(
            self.admission.grants(namespace),
            self.secrets,
            "KnowledgeBase spec.embedder",
            base_url=spec.base_url,
            api_key=spec.api_key,
            api_key_env=spec.api_key_env,
        )
        found = self._embedders.get((spec, endpoint))
        if found is None:
            found = OpenAIEmbedder(
                spec.model, endpoint.base_url, endpoint.api_key, http_client(endpoint.policy)
            )
            self._embedders[(spec, endpoint)] = found
        return found

    # --- search ---------------------------------------------------------------------------

    async def search(
        self, namespace: str, kb: str, query: str, k: int = 5, mode: SearchMode = "hybrid"
    ) -> list[Hit]:
        spec = await self.base(namespace, kb)
        if not query.strip():
            raise InvalidRequestError("the query is empty", hint="give the words to search for")
        if mode == "text":
            return await self.index.text_search(namespace, kb, query, k)
        embedder = await self.embedder(namespace, spec.embedder)
        vector = (await embedder.embed([query]))[0]
        if mode == "vector":
            return await self.index.vector_search(namespace, kb, vector, k)
        return await hybrid_search(self.index, namespace, kb, query, vector, k)

    async def sources(self, namespace: str, kb: str) -> list[SourceInfo]:
        await self.base(namespace, kb)
        return await self.index.sources(namespace, kb)

    async def delete_source(self, namespace: str, kb: str, source: str) -> int:
        await self.base(namespace, kb)
        return await self.index.delete_source(namespace, kb, source)

    # --- ingestion ------------------------------------------------------------------------

    async def ingest(
        self, namespace: str, kb: str, uploads: list[Upload] | None = None
    ) -> dict[str, Any]:
        """Start a job over ``uploads``, or over the base's declared sources when none
        are given; returns the job as first stored (``GET`` it for progress)."""
        from hangar.ids import new_id

        spec = await self.base(namespace, kb)
        if uploads is not None:
            readers = {u.name: _upload_reader(u) for u in uploads}
            folders: dict[str, set[str]] = {}
        else:
            if not spec.sources:
                raise InvalidRequestError(
                    f"knowledge base {kb!r} declares no sources and no files were sent",
                    hint="upload files with the request, or add spec.sources",
                )
            readers, folders = _declared(spec, self.admission.grants(namespace))
        job: dict[str, Any] = {
            "id": new_id("ing"),
            "knowledgeBase": kb,
            "status": "running",
            **_progress(len(readers)),
            "resumable": True,
            "uploads": uploads is not None,
            "createdAt": _now(),
            "updatedAt": _now(),
            "finishedAt": None,
        }
        await self.index.save_job(namespace, job["id"], job)
        if uploads:  # after the job: no file is kept for a job that was never stored
            await self.index.keep_uploads(namespace, job["id"], uploads)
        self._start(_Job(namespace, kb, job), spec, readers, folders)
        return dict(job)

    def _start(
        self,
        job: _Job,
        spec: KnowledgeBaseSpec,
        readers: dict[str, Reader],
        folders: dict[str, set[str]],
    ) -> None:
        task = asyncio.create_task(self._run(job, spec, readers, folders))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def resume_stale(self) -> list[str]:
        """Take over the jobs whose processes went silent, and run them again here; the
        ids of those this process won. A job whose base is gone, or whose sources can
        no longer be listed, fails instead; one stored before jobs were resumable, or
        whose files were never kept, is stored interrupted."""
        if not await self.store.list_all_resources(KnowledgeBase.KIND):
            return []  # no base, no job: the index is not even opened
        before = (datetime.now(UTC) - timedelta(seconds=STALE_SECONDS)).isoformat()
        resumed = []
        for namespace, body in await self.index.stale_jobs(before):
            uploads = bool(body.get("uploads"))
            kept = await self.index.uploads(namespace, body["id"]) if uploads else []
            # A job of an earlier version, or whose process died before its files were
            # kept, cannot be resumed: stored as it is reported, not listed again.
            if not body.get("resumable") or (uploads and len(kept) < body["total"]):
                await self.index.save_job(
                    namespace, body["id"], _interrupted(body), saved=body["updatedAt"]
                )
                continue
            kb = body["knowledgeBase"]
            try:
                spec = await self.base(namespace, kb)
                readers: dict[str, Reader]
                folders: dict[str, set[str]]
                if uploads:
                    readers, folders = {u.name: _upload_reader(u) for u in kept}, {}
                else:
                    readers, folders = _declared(spec, self.admission.grants(namespace))
            except HangarError as exc:
                failed = body | {
                    "status": "failed",
                    "error": _error(exc),
                    "updatedAt": _now(),
                    "finishedAt": _now(),
                }
                saved = body["updatedAt"]
                if await self.index.save_job(namespace, body["id"], failed, saved=saved) and (
                    uploads
                ):
                    await self.index.drop_uploads(namespace, body["id"])
                continue
            again = body | {
                **_progress(len(readers)),
                "resumed": body.get("resumed", 0) + 1,
                "updatedAt": _now(),
            }
            if await self.index.save_job(namespace, body["id"], again, saved=body["updatedAt"]):
                log.info("ingestion %s: resumed here after its process went silent", body["id"])
                self._start(_Job(namespace, kb, again), spec, readers, folders)
                resumed.append(body["id"])
        return resumed

    def start_resuming(self) -> None:
        """In a process that runs work: resume silent jobs as they are found."""
        self._resuming = asyncio.create_task(self._resume_forever(), name="hangar-ingestion")

    async def _resume_forever(self) -> None:
        while True:
            try:
                await self.resume_stale()
            except Exception:
                log.exception("looking for ingestion jobs to resume failed; retrying")
            await asyncio.sleep(RESUME_SECONDS)

    async def job(self, namespace: str, kb: str, job_id: str) -> dict[str, Any]:
        job = await self.index.get_job(namespace, job_id)
        if job is None or job.get("knowledgeBase") != kb:
            raise IngestionNotFoundError(
                f"ingestion {job_id!r} not found in namespace {namespace!r}",
                details={"ingestion": job_id},
            )
        alive = datetime.fromisoformat(job.get("updatedAt") or job["createdAt"])
        silent = (datetime.now(UTC) - alive).total_seconds() > STALE_SECONDS
        if job["status"] == "running" and silent and not job.get("resumable"):
            return _interrupted(job)
        return job

    async def _save(self, job: _Job) -> None:
        """Store the job's progress, if it is still this process's to store."""
        async with job.saving:
            stamp = _now()
            body = job.body | {"updatedAt": stamp}
            if not await self.index.save_job(
                job.namespace, job.body["id"], body, saved=job.body["updatedAt"]
            ):
                job.lost = True
                raise _TakenOver(job.body["id"])
            job.body["updatedAt"] = stamp

    async def _heartbeat(self, job: _Job, running: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._save(job)
            except _TakenOver:
                running.cancel()
                return
            except Exception:  # the next beat, or the job's own saves, will tell
                log.warning("ingestion %s: saving its progress failed", job.body["id"])

    async def _run(
        self,
        running: _Job,
        spec: KnowledgeBaseSpec,
        readers: dict[str, Reader],
        folders: dict[str, set[str]],
    ) -> None:
        namespace, kb, job = running.namespace, running.kb, running.body
        started = time.perf_counter()
        this = asyncio.current_task()
        assert this is not None
        beating = asyncio.create_task(self._heartbeat(running, this))
        try:
            embedder = await self.embedder(namespace, spec.embedder)
            known = {s.source: s for s in await self.index.sources(namespace, kb)}
            for source, reader in readers.items():
                try:
                    job["chunks"] += await self._source(
                        namespace, kb, spec, embedder, source, reader, known.get(source), job
                    )
                except HangarError as exc:
                    job["errors"].append(
                        {"source": source, "code": exc.code, "message": exc.message}
                        | ({"hint": exc.hint} if exc.hint else {})
                    )
                except Exception as exc:  # one source's surprise must not end the job
                    log.exception("ingesting %s into %s failed", source, kb)
                    job["errors"].append(
                        {"source": source, "code": "internal_error", "message": repr(exc)}
                    )
                job["done"] += 1
                await self._save(running)
            if job["indexed"]:
                await self.index.analyze()
            for prefix, present in folders.items():  # files gone from a folder: chunks go
                for source in known:
                    if source.startswith(prefix) and source not in present:
                        await self.index.delete_source(namespace, kb, source)
                        job["removed"] += 1
            job["status"] = "succeeded"
        except (_TakenOver, asyncio.CancelledError):
            if running.lost:  # its save was refused, or the heartbeat's
                log.info("ingestion %s: taken over by another process; stopped", job["id"])
                return
            raise  # this process stops: the job stays running, for another to go on with
        except HangarError as exc:
            job["status"] = "failed"
            job["error"] = _error(exc)
        except Exception as exc:
            log.exception("ingestion %s failed", job["id"])
            job["status"] = "failed"
            job["error"] = {"code": "internal_error", "message": repr(exc)}
        finally:
            beating.cancel()
            if not running.lost and job["status"] != "running":
                job["finishedAt"] = _now()
                job["seconds"] = round(time.perf_counter() - started, 3)
                with contextlib.suppress(_TakenOver):
                    await asyncio.shield(self._save(running))
                    if job.get("uploads"):  # ended: no one will read them again
                        await asyncio.shield(self.index.drop_uploads(namespace, job["id"]))

    async def _source(
        self,
        namespace: str,
        kb: str,
        spec: KnowledgeBaseSpec,
        embedder: Embedder,
        source: str,
        reader: Reader,
        indexed: SourceInfo | None,
        job: dict[str, Any],
    ) -> int:
        document = await reader()
        content = digest(document)
        if indexed is not None and indexed.digest == content:
            job["unchanged"] += 1
            return 0
        max_tokens = min(spec.chunking.max_tokens, embedder.max_tokens)
        overlap = min(spec.chunking.overlap, max_tokens // 2)
        chunks = await asyncio.to_thread(
            chunk_text,
            document.text,
            max_tokens=max_tokens,
            overlap=overlap,
            markdown=document.markdown,
            count=embedder.count_tokens,
        )
        if not chunks:
            raise DocumentError(f"{source} has no text to index", details={"source": source})
        vectors = await embedder.embed([c.embedding_text() for c in chunks])
        await self.index.replace_source(namespace, kb, source, content, chunks, vectors)
        job["indexed"] += 1
        return len(chunks)

    async def wait(self) -> None:
        """Until every job this process started has ended (tests, shutdown)."""
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)

    async def close(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resuming
        for task in list(self._jobs):
            task.cancel()
        await self.wait()
        if self._index is not None:
            await self._index.close()


def _interrupted(job: dict[str, Any]) -> dict[str, Any]:
    """A job whose process died with its uploaded files not kept (an earlier
    version's, or one that died between storing the job and keeping its files)."""
    return job | {
        "status": "interrupted",
        "error": {
            "code": "interrupted",
            "message": "the process running this ingestion stopped before it finished",
            "hint": "send the files again: those already indexed and unchanged are skipped",
        },
    }


def _error(exc: HangarError) -> dict[str, Any]:
    """What a failed job says of why it failed."""
    return {"code": exc.code, "message": exc.message, "hint": exc.hint}


def _progress(total: int) -> dict[str, Any]:
    """A job's counters at its start (or its restart elsewhere)."""
    return {
        "total": total,
        "done": 0,
        "indexed": 0,
        "unchanged": 0,
        "removed": 0,
        "chunks": 0,
        "errors": [],
    }


def _upload_reader(upload: Upload) -> Reader:
    async def read() -> Document:
        check_size(upload.name, upload.size)
        assert upload.data is not None
        return await asyncio.to_thread(read_document, upload.name, upload.data, upload.content_type)

    return read


def _declared(
    spec: KnowledgeBaseSpec, grants: Grants
) -> tuple[dict[str, Reader], dict[str, set[str]]]:
    """Readers for the base's declared sources, and each folder's files (by the prefix
    their source names share), to drop what has left them. A folder the namespace may
    no longer read (a grant withdrawn) fails the job with the reason."""
    readers: dict[str, Reader] = {}
    folders: dict[str, set[str]] = {}
    for i, source in enumerate(spec.sources):
        if source.url is not None:
            readers[source.url] = _url_reader(
                source.url, tuple(spec.egress.allow_hosts), grants.policy
            )
            continue
        assert source.folder is not None
        # A file's source name is its path as the spec gives the folder: what a
        # citation shows, without the server's own layout when the folder is relative.
        declared = Path(source.folder)
        root = grants.readable(source.folder, f"KnowledgeBase spec.sources[{i}]")
        prefix = str(declared) + os.sep
        files = {
            str(declared / path.relative_to(root)): path for path in _folder_files(source, root)
        }
        folders[prefix] = set(files)
        for name, path in files.items():
            readers[name] = _file_reader(name, path, root)
    return readers, folders


def _folder_files(source: SourceSpec, root: Path) -> list[Path]:
    """The folder's files the patterns take: regular files only, and no link (a link
    could lead anywhere the server can read; a device or a pipe would never end)."""
    if not root.is_dir():
        raise InvalidRequestError(
            f"source folder {source.folder} is not a directory on the server",
            hint="give a folder the server can read, or upload the files instead",
            details={"folder": source.folder},
        )
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in names:
            path = Path(folder) / name
            if not any(fnmatch.fnmatch(name, p) for p in source.include):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
    return sorted(found)


def _file_reader(name: str, path: Path, root: Path) -> Reader:
    def read() -> Document:
        try:
            if root not in path.resolve().parents:
                raise OSError(errno.EACCES, "it lies outside its folder")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise OSError(errno.EINVAL, "it is not a regular file")
                check_size(name, info.st_size)
                data = handle.read(MAX_BYTES + 1)
            check_size(name, len(data))
        except OSError as exc:
            raise DocumentError(
                f"{name} cannot be read: {exc.strerror}", details={"source": name}
            ) from None
        return read_document(name, data)

    async def in_thread() -> Document:
        return await asyncio.to_thread(read)

    return in_thread


def _url_reader(url: str, allow_hosts: tuple[str, ...], policy: AddressPolicy) -> Reader:
    async def read() -> Document:
        try:
            answer = await fetch(
                url,
                allow_hosts,
                policy=policy,
                limit=MAX_BYTES,
                timeout=30,
                owner=("the base", "the KnowledgeBase's spec.egress.allowHosts"),
            )
        except ToolNotAllowedError as exc:
            raise DocumentError(
                f"{url} is not fetched: {exc.message}",
                hint=exc.hint or "add the host to the KnowledgeBase's spec.egress.allowHosts",
                details={"source": url},
            ) from None
        except ToolError as exc:
            raise DocumentError(exc.message, details={"source": url}) from None
        if answer.status >= 400:
            raise DocumentError(
                f"GET {url} answered HTTP {answer.status}",
                details={"source": url, "status": answer.status},
            )
        if answer.truncated:
            raise DocumentTooLargeError(
                f"{url} is more than the {MAX_BYTES // 1024 // 1024} MiB a file may have",
                hint="split it into smaller files and ingest those",
                details={"source": url, "max_bytes": MAX_BYTES},
            )
        return await asyncio.to_thread(read_document, url, answer.body, answer.content_type)

    return read
