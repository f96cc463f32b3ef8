"""Refusing images whose pixels may show identifying text (PS3.15 E.1.1, E.3.1).

The Basic Profile cleans attributes, not pixels: an image with identifying
text burned into its pixel data must not be shared unless the coverage line
allows it (`Options.allow_burned_in`). PS3.3 C.7.6.1.1.3 Burned In Annotation
says whether it has; when it is absent, ultrasound and secondary capture
images (screenshots, scanned documents, ultrasound screens with the patient's
name in the banner) are presumed to have it.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from services.imaging.deid.errors import BurnedInAnnotationRefused
from services.imaging.deid.options import Options

__all__ = ["PRESUMED_BURNED_IN_CLASSES", "check_burned_in"]

_ULTRASOUND = {
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image (retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image (retired)",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image",
    "1.2.840.10008.5.1.4.1.1.6.2": "Enhanced US Volume",
}
_SECONDARY_CAPTURE = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
}
# SOP classes presumed to carry burned-in text when Burned In Annotation is absent.
PRESUMED_BURNED_IN_CLASSES: frozenset[str] = frozenset(_ULTRASOUND | _SECONDARY_CAPTURE)


def _sop_class(ds: Dataset) -> str:
    value = ds.get("SOPClassUID")
    if not value:
        meta = getattr(ds, "file_meta", None)
        value = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(value or "").strip()


def check_burned_in(ds: Dataset, options: Options) -> None:
    """Raise `BurnedInAnnotationRefused` if `ds` may show identifying text the line refuses.

    Refused, unless `options.allow_burned_in`: Burned In Annotation (0028,0301)
    is YES; or it is absent (or empty) and the image is ultrasound (Modality US
    or an ultrasound SOP class) or secondary capture. NO is taken at its word.
    """
    if options.allow_burned_in:
        return
    flag = str(ds.get("BurnedInAnnotation") or "").strip().upper()
    if flag == "YES":
        raise BurnedInAnnotationRefused("Burned In Annotation is YES")
    if flag:
        return
    sop_class = _sop_class(ds)
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality == "US" or sop_class in _ULTRASOUND:
        raise BurnedInAnnotationRefused("an ultrasound image without Burned In Annotation")
    if sop_class in _SECONDARY_CAPTURE:
        raise BurnedInAnnotationRefused(
            f"a {_SECONDARY_CAPTURE[sop_class]} without Burned In Annotation"
        )
