"""WADO-RS Retrieve Frames: the native pixel bytes of chosen frames, to entitled callers only."""

from __future__ import annotations

import email.parser
import email.policy

import httpx
import numpy as np

from tests.imaging.test_rendered import COLUMNS, FRAMES, ROWS, Rendered, rendered

__all__ = ["rendered"]


def parts(response: httpx.Response) -> list[bytes]:
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    return [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[attr-defined]


def url(r: Rendered, frames: str, instance: str | None = None, study: str | None = None) -> str:
    return (
        f"/dicomweb/studies/{study or r.study}/series/{r.series}"
        f"/instances/{instance or r.multi}/frames/{frames}"
    )


async def test_frames_come_back_in_the_order_asked_as_native_pixels(rendered: Rendered) -> None:
    s = rendered.sharing
    response = await s.client.get(url(rendered, "3,1"), headers=s.h(s.provider_radiologist))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )
    third, first = (np.frombuffer(p, dtype="<u2").reshape(ROWS, COLUMNS) for p in parts(response))
    # The test series ramps each frame by 50 HU over the one before (stored = HU + 1024).
    assert int(third[0, 0]) - int(first[0, 0]) == 100
    assert len(parts(response)) == 2


async def test_frames_are_refused_to_whoever_may_not_see_them(rendered: Rendered) -> None:
    s = rendered.sharing
    assert (await s.client.get(url(rendered, "1"), headers=s.h(s.stranger))).status_code == 404
    assert (await s.client.get(url(rendered, "1"))).status_code == 401
    beyond = await s.client.get(
        url(rendered, f"1,{FRAMES + 1}"), headers=s.h(s.provider_radiologist)
    )
    assert beyond.status_code == 404
    for bad in ("0", "x", "1,,2", "-1"):
        response = await s.client.get(url(rendered, bad), headers=s.h(s.provider_radiologist))
        assert response.status_code == 404, bad
    wrong = await s.client.get(
        url(rendered, "1"), headers={**s.h(s.provider_radiologist), "Accept": "image/jpeg"}
    )
    assert wrong.status_code == 406
