"""Resources and their versions in SQL, with the short cache the hot path reads."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hangar.errors import (
    ConflictError,
)
from hangar.ids import now
from hangar.spec.base import Resource
from hangar.store.engine import SqlCore
from hangar.store.records import (
    ApplyOutcome,
    ResourceVersion,
    StoredResource,
)
from hangar.store.rows import to_resource, to_version
from hangar.store.tables import (
    resource_versions,
    resources,
)

RESOURCE_CACHE_SECONDS = 1.0
"""How old a cached resource may be: what this process applies or deletes is seen at
once; what another process does, within this."""


class SqlResources(SqlCore):
    """The store's resources calls, over the core's engine."""

    async def apply_resource(
        self, namespace: str, resource: Resource
    ) -> tuple[StoredResource, ApplyOutcome]:
        kind, name = resource.kind, resource.name
        self._forget_cached(namespace, kind)
        spec, spec_hash = resource.spec_json(), resource.spec_hash()
        labels, annotations = dict(resource.metadata.labels), dict(resource.metadata.annotations)
        key = (
            (resources.c.namespace == namespace)
            & (resources.c.kind == kind)
            & (resources.c.name == name)
        )
        stamp = now()
        try:
            async with self.writing() as conn:
                current = (
                    (await conn.execute(sa.select(resources).where(key).with_for_update()))
                    .mappings()
                    .first()
                )
                if current is not None and current["spec_hash"] == spec_hash:
                    if current["labels"] == labels and current["annotations"] == annotations:
                        return to_resource(current), "unchanged"
                    await conn.execute(
                        resources.update()
                        .where(key)
                        .values(labels=labels, annotations=annotations, updated_at=stamp)
                    )
                    outcome: ApplyOutcome = "configured"
                else:
                    last = await conn.scalar(
                        sa.select(sa.func.max(resource_versions.c.generation)).where(
                            (resource_versions.c.namespace == namespace)
                            & (resource_versions.c.kind == kind)
                            & (resource_versions.c.name == name)
                        )
                    )
                    generation = (last or 0) + 1
                    uid = current["uid"] if current is not None else str(uuid.uuid4())
                    await conn.execute(
                        resource_versions.insert().values(
                            namespace=namespace,
                            kind=kind,
                            name=name,
                            generation=generation,
                            uid=uid,
                            spec_hash=spec_hash,
                            spec=spec,
                            created_at=stamp,
                        )
                    )
                    values = dict(
                        uid=uid,
                        generation=generation,
                        spec_hash=spec_hash,
                        spec=spec,
                        labels=labels,
                        annotations=annotations,
                        updated_at=stamp,
                    )
                    if current is None:
                        await conn.execute(
                            resources.insert().values(
                                namespace=namespace,
                                kind=kind,
                                name=name,
                                created_at=stamp,
                                **values,
                            )
                        )
                        outcome = "created"
                    else:
                        await conn.execute(resources.update().where(key).values(**values))
                        outcome = "configured"
                row = (await conn.execute(sa.select(resources).where(key))).mappings().one()
                return to_resource(row), outcome
        except IntegrityError as exc:
            raise ConflictError(
                f"{kind} {name!r} was changed by another request at the same time",
                hint="apply again",
            ) from exc
        finally:
            if kind == "Quota":  # committed: a limit may apply now
                self._queue_changed(None)

    async def get_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None:
        query = sa.select(resources).where(
            (resources.c.namespace == namespace)
            & (resources.c.kind == kind)
            & (resources.c.name == name)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else to_resource(row)

    async def list_resources(self, namespace: str, kind: str) -> list[StoredResource]:
        query = (
            sa.select(resources)
            .where((resources.c.namespace == namespace) & (resources.c.kind == kind))
            .order_by(resources.c.name)
        )
        async with self.engine.connect() as conn:
            return [to_resource(row) for row in (await conn.execute(query)).mappings()]

    async def cached_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None:
        key = (namespace, kind, name)
        hit = self._cached.get(key)
        if hit is not None and time.monotonic() - hit[0] < RESOURCE_CACHE_SECONDS:
            cached: StoredResource = hit[1]
            return cached
        found = await self.get_resource(namespace, kind, name)
        if found is not None:  # a missing one is looked for again: it may be applied
            self._cached[key] = (time.monotonic(), found)
        return found

    async def cached_resources(self, namespace: str, kind: str) -> list[StoredResource]:
        key = (namespace, kind, "")
        hit = self._cached.get(key)
        if hit is not None and time.monotonic() - hit[0] < RESOURCE_CACHE_SECONDS:
            return list(hit[1])
        found = await self.list_resources(namespace, kind)
        self._cached[key] = (time.monotonic(), found)
        return list(found)

    def _forget_cached(self, namespace: str, kind: str) -> None:
        for key in [k for k in self._cached if k[0] == namespace and k[1] == kind]:
            self._cached.pop(key, None)

    async def list_all_resources(self, kind: str) -> list[StoredResource]:
        query = (
            sa.select(resources)
            .where(resources.c.kind == kind)
            .order_by(resources.c.namespace, resources.c.name)
        )
        async with self.engine.connect() as conn:
            return [to_resource(row) for row in (await conn.execute(query)).mappings()]

    async def delete_resource(self, namespace: str, kind: str, name: str) -> bool:
        """Remove the live resource; its versions stay, so past runs still resolve."""
        self._forget_cached(namespace, kind)
        async with self.writing() as conn:
            result = await conn.execute(
                resources.delete().where(
                    (resources.c.namespace == namespace)
                    & (resources.c.kind == kind)
                    & (resources.c.name == name)
                )
            )
        return bool(result.rowcount)

    async def list_versions(self, namespace: str, kind: str, name: str) -> list[ResourceVersion]:
        query = (
            sa.select(resource_versions)
            .where(
                (resource_versions.c.namespace == namespace)
                & (resource_versions.c.kind == kind)
                & (resource_versions.c.name == name)
            )
            .order_by(resource_versions.c.generation)
        )
        async with self.engine.connect() as conn:
            return [to_version(row) for row in (await conn.execute(query)).mappings()]

    async def get_version(
        self, namespace: str, kind: str, name: str, generation: int
    ) -> ResourceVersion | None:
        query = sa.select(resource_versions).where(
            (resource_versions.c.namespace == namespace)
            & (resource_versions.c.kind == kind)
            & (resource_versions.c.name == name)
            & (resource_versions.c.generation == generation)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else to_version(row)
