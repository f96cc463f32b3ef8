"""A share retrieved with dicomweb-client keeps its references consistent and carries no identity."""

from __future__ import annotations

import io

import httpx
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from services.imaging import deid
from services.imaging.locations import shared_copies
from shared.platform import Platform
from tests.factories import Factory
from tests.imaging.factories import instance
from tests.imaging.test_shares import make_sharing


def series_with_references() -> list[bytes]:
    """Three CT images, each naming the one before it in ReferencedImageSequence, one frame of reference."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files: list[bytes] = []
    previous: tuple[str, str] | None = None
    for number in range(1, 4):
        ds = pydicom.dcmread(io.BytesIO(instance(study_uid=study, series_uid=series)))
        ds.InstanceNumber, ds.FrameOfReferenceUID = number, frame
        if previous is not None:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = previous
            ds.ReferencedImageSequence = Sequence([item])
        previous = (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


async def test_references_between_shared_instances_still_resolve(
    factory: Factory, client: httpx.AsyncClient, platform: Platform
) -> None:
    originals = series_with_references()
    study = str(pydicom.dcmread(io.BytesIO(originals[0])).StudyInstanceUID)
    sharing = await make_sharing(factory, client, platform, extra_files=originals)
    made = await sharing.share(study)
    assert made.status_code == 201, made.text
    async with shared_copies(platform) as store:
        shared = [
            pydicom.dcmread(io.BytesIO(d))
            async for d in store.study_files(made.json()["shared_study_uid"])
        ]
    by_uid = {str(ds.SOPInstanceUID): ds for ds in shared}
    assert len(by_uid) == 3
    references = [
        str(item.ReferencedSOPInstanceUID)
        for ds in shared
        for item in ds.get("ReferencedImageSequence", [])
    ]
    assert len(references) == 2 and all(ref in by_uid for ref in references)
    assert len({str(ds.FrameOfReferenceUID) for ds in shared}) == 1
    assert len({str(ds.SeriesInstanceUID) for ds in shared}) == 1
    identifiers = deid.identifiers_of(pydicom.dcmread(io.BytesIO(originals[0])))
    for data in originals[1:]:
        identifiers = identifiers | deid.identifiers_of(pydicom.dcmread(io.BytesIO(data)))
    assert all(deid.scan(ds, identifiers) == [] for ds in shared)
