"""Where DICOM instances live: one interface (`Store`), two stores.

- `OrthancStore`: production; Orthanc's REST API through pyorthanc and its DICOMweb plugin.
- `FileStore`: the embedded default; files on disk with an SQLite index.

Both check files alike (`part10`) and answer alike (`query`); one test suite
(tests/imaging/test_stores.py) runs against both. Errors are in `errors`.
"""

from typing import TYPE_CHECKING

from services.imaging.stores.base import (
    InstanceRef,
    Retrieval,
    SeriesSummary,
    Store,
    StoredInstance,
    StoreHealth,
    StudySummary,
)
from services.imaging.stores.errors import (
    NotFoundInStore,
    RejectedByStore,
    StoreError,
    StoreUnavailable,
)
from services.imaging.stores.files import FileStore
from services.imaging.stores.orthanc import OrthancStore

__all__ = [
    "FileStore",
    "InstanceRef",
    "NotFoundInStore",
    "OrthancStore",
    "RejectedByStore",
    "Retrieval",
    "SeriesSummary",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreUnavailable",
    "StoredInstance",
    "StudySummary",
]

if TYPE_CHECKING:  # mypy checks that both stores implement the interface

    def _implements(files: FileStore, orthanc: OrthancStore) -> tuple[Store, Store]:
        return files, orthanc
