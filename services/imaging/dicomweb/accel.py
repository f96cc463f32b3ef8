"""WADO-RS bytes sent by nginx instead of Python: `X-Accel-Redirect` to the shared Orthanc.

With `JISR_IMAGING_ACCEL_REDIRECT` set (nginx in front, the shared store an
Orthanc), a retrieve the caller is entitled to is answered with an empty 200
whose `X-Accel-Redirect` names nginx's internal location for the same study,
series or instance; nginx then proxies Orthanc's multipart answer itself, with
Orthanc's credentials from its own configuration (infra/nginx/jisr.conf.template
says why they are not in this answer). Copying a study through Python doubled
its retrieve time (bench/README.md, DICOMweb).

When Orthanc refuses (a series outside the study, an instance outside the
series), nginx asks this service again with the same request and
`X-Jisr-Store-Status`; the service then answers the problem it answers without
nginx. A client sending that header itself only turns its own answer into that
problem, so it is trusted for nothing else.
"""

from __future__ import annotations

from fastapi import Request, Response

from services.imaging.stores import part10
from shared.problems import JisrError, NotFound

STORE_STATUS = "x-jisr-store-status"
NOT_IN_STORE = "no such study, series or instance"


def target(prefix: str, study: str, series: str | None, instance: str | None) -> str:
    """nginx's internal path for this resource; 404 for a UID no store can hold."""
    uids = [uid for uid in (study, series, instance) if uid is not None]
    if not all(part10.is_uid(uid) for uid in uids):
        raise NotFound(NOT_IN_STORE)
    path = f"{prefix}studies/{study}"
    if series is not None:
        path += f"/series/{series}"
        if instance is not None:
            path += f"/instances/{instance}"
    return path


def store_refusal(request: Request) -> None:
    """Raise what the shared store's refusal means, when nginx says it refused."""
    status = request.headers.get(STORE_STATUS, "")
    if not status:
        return
    # nginx's $upstream_status: "200 : 404" (the service's redirect, then Orthanc).
    last = status.replace(":", ",").split(",")[-1].strip()
    if last == "404":
        raise NotFound(NOT_IN_STORE)
    raise JisrError(f"the shared store answered a retrieve with {last[:3]!r}")


def redirect(path: str) -> Response:
    """The empty answer nginx replaces with the shared store's (nginx adds `no-store`)."""
    return Response(status_code=200, headers={"X-Accel-Redirect": path})
