"""One interface to where DICOM instances live: Orthanc in production, files on disk when embedded.

A store keeps DICOM Part 10 files (PS3.10 §7) and answers the questions the
imaging service asks of it: which studies, series and instances it holds
(with the attributes of PS3.4 C.6.1.1.2-4 that a worklist shows), the files of
one study, and a study's metadata in the DICOM JSON model (PS3.18 F.2).

Every store checks a file the same way before it keeps it (see `part10`):
the 128-byte preamble is zeroed, the file must parse completely, and the four
UIDs that place it in the hierarchy must be there. A second `put` of the same
SOP Instance UID keeps the first file and says so (`already_stored`).

Orders are part of the contract so that both stores answer alike: studies
newest `StudyDate` first, then by UID; series by `SeriesNumber` (missing last),
then UID; instances by series UID, `InstanceNumber` (missing last), then UID.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from services.imaging.stores.errors import StoreError
    from services.imaging.stores.part10 import Part10

__all__ = [
    "InstanceRef",
    "Retrieval",
    "SeriesSummary",
    "Store",
    "StoreHealth",
    "StoredInstance",
    "StudySummary",
]


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What `put` kept: the instance's place in the hierarchy and the size of the stored file."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    size: int
    already_stored: bool = False


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One study as a worklist shows it; `modalities` is ModalitiesInStudy (0008,0061), sorted."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession_number: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instance_count: int


@dataclass(frozen=True, slots=True)
class InstanceRef:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store can serve now; `detail` says what was checked, or what failed."""

    backend: str
    available: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Retrieval:
    """A WADO-RS answer (PS3.18 §8.7.3.1) as a store sends it: read `chunks`, then `aclose`.

    `media_type` is `multipart/related; type="application/dicom"; boundary=...`;
    the parts are the stored files byte for byte, in the store's order.
    """

    media_type: str
    chunks: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]]


@runtime_checkable
class Store(Protocol):
    """Where DICOM instances live. Every method may raise a `StoreError` and nothing else.

    Study-scoped calls raise `NotFoundInStore` for a study (or series) the store
    does not hold, including a UID that is not a well-formed UID.
    """

    @property
    def address(self) -> str:
        """Where the instances are (an Orthanc's URL, a folder): two stores with the same
        address hold the same instances."""
        ...

    async def put(self, data: bytes) -> StoredInstance:
        """Keep one DICOM Part 10 file; `RejectedByStore` says why one is refused."""
        ...

    async def put_checked(self, parts: Sequence[Part10]) -> list[StoredInstance | StoreError]:
        """Keep files that `part10.read` has checked, several at once; one answer per part,
        in order: what was kept, or the `StoreError` that kept it out (never raised)."""
        ...

    async def get(self, sop_instance_uid: str) -> bytes:
        """The stored file of one instance, byte for byte."""
        ...

    async def studies(
        self,
        *,
        study_uid: str | None = None,
        patient_id: str | None = None,
        patient_name: str | None = None,
        accession_number: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        limit: int | None = None,
    ) -> list[StudySummary]:
        """Studies matching every filter given (PS3.4 C.2.2.2, case-insensitive).

        `patient_id`, `patient_name` and `accession_number` take `*` and `?`
        wildcards; `study_date` is `YYYYMMDD` or a range `A-B`, `A-`, `-B`;
        `modality` matches a study with at least one series of that modality.
        An empty or missing filter matches everything.
        """
        ...

    async def series(self, study_uid: str) -> list[SeriesSummary]:
        """The series of one study."""
        ...

    async def instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """The instances of one study, or of one of its series."""
        ...

    def study_files(self, study_uid: str) -> AsyncIterator[bytes]:
        """Every instance file of one study, in `instances` order, one at a time."""
        ...

    async def retrieve(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> Retrieval:
        """A study, one of its series, or one instance as a multipart answer, ready to stream.

        `NotFoundInStore` before any byte when the study does not hold the series or
        the series the instance.
        """
        ...

    async def delete_study(self, study_uid: str) -> None:
        """Remove a study and every file in it."""
        ...

    async def remove(self, sop_instance_uids: Sequence[str]) -> None:
        """Remove these instances, and a series or study left empty with them; an instance
        the store does not hold is no error (a STOW-RS request undoing what it kept)."""
        ...

    async def metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """Each instance of a study in the DICOM JSON model (PS3.18 F.2), in `instances` order.

        Pixel data (7FE0,0008/0009/0010) and trailing padding (FFFC,FFFC) are
        left out; other binary values (OB, OW, OF, OD, OL, OV, UN) appear with
        their `vr` and no value, so the DICOMweb layer can attach its own
        BulkDataURI. File meta information (group 0002) is not included.
        """
        ...

    async def health(self) -> StoreHealth:
        """Whether the store can serve now; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...
