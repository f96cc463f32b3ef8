"""Which store holds what: an institution's originals, and the de-identified copies partners read.

Originals stay in the origin institution's own store: its Orthanc when the
institution names one (`Institution.imaging_store`), else files under
`data_dir/imaging/originals/<code>`. De-identified copies live apart, in the
shared Orthanc (`JISR_SHARED_STORE_URL`) or under `data_dir/imaging/shared/`,
so the partner-facing DICOMweb can only ever serve from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.imaging.stores import FileStore, OrthancStore, Store
from shared.platform import Platform
from shared.registry.models import Institution


@asynccontextmanager
async def originals(platform: Platform, institution: Institution) -> AsyncIterator[Store]:
    settings = platform.settings
    store: FileStore | OrthancStore
    if institution.imaging_store:
        store = OrthancStore(
            institution.imaging_store, settings.orthanc_username, settings.orthanc_password
        )
    else:
        store = FileStore(settings.data_dir / "imaging" / "originals" / institution.code)
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def shared_copies(platform: Platform) -> AsyncIterator[Store]:
    settings = platform.settings
    store: FileStore | OrthancStore
    if settings.shared_store_url:
        store = OrthancStore(
            settings.shared_store_url,
            settings.shared_store_username,
            settings.shared_store_password,
        )
    else:
        store = FileStore(settings.data_dir / "imaging" / "shared")
    try:
        yield store
    finally:
        await store.aclose()
