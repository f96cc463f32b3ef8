"""What a store raises. Callers never see an httpx, pyorthanc, pydicom or OS exception.

    JisrError (shared.problems)
    └── StoreError            502  the store failed in a way it could not explain
        ├── NotFoundInStore   404  no such study, series or instance
        ├── RejectedByStore   422  the data is not a DICOM file the store keeps (`reason` says why)
        └── StoreUnavailable  503  the store cannot be reached, timed out, or refused our credentials

The original exception, when there is one, is the `__cause__`, for the logs.
"""

from __future__ import annotations

from shared.problems import JisrError

__all__ = ["NotFoundInStore", "RejectedByStore", "StoreError", "StoreUnavailable"]


class StoreError(JisrError):
    status, slug = 502, "store_error"


class NotFoundInStore(StoreError):
    status, slug = 404, "not_found"


class RejectedByStore(StoreError):
    """The store refused the data; `reason` is a sentence a sender can act on."""

    status, slug = 422, "rejected_by_store"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(StoreError):
    status, slug = 503, "store_unavailable"
