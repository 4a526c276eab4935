"""Photos through the running system: upload to the NATS Object Store, type and size limits,
references in events (digest, size, type), and downloads only for authorised callers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.conftest import eventually
from tests.intake_support import jpeg_like, login, png

GRID = "520102001001"  # inspector-520102001001's grid (Nanming, Xinhua community)


async def test_upload_limits_references_and_download(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    inspector = await login(client, "inspector-520102001001")
    other_inspector = await login(client, "inspector-520103001001")
    dispatcher = await login(client, "dispatcher")
    auditor = await login(client, "auditor")
    image = png()
    # A raw upload is sniffed, hashed and stored; the same bytes again are the same photo.
    response = await client.post(
        "/v1/photos", content=image, headers={**inspector, "Content-Type": "image/png"}
    )
    assert response.status_code == 201, response.text
    ref = response.json()
    digest = "sha256:" + hashlib.sha256(image).hexdigest()
    assert ref == {
        "digest": digest,
        "size": len(image),
        "content_type": "image/png",
        "url": f"/v1/photos/{digest}",
    }
    again = await client.post(
        "/v1/photos",
        content=image,
        headers={**inspector, "Content-Type": "application/octet-stream"},
    )
    assert again.status_code == 201 and again.json()["digest"] == digest

    # Multipart works too; the declared type is ignored, the content decides.
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24
    multipart = await client.post(
        "/v1/photos",
        files={"file": ("x.jpg", webp, "image/jpeg")},
        headers=inspector,
    )
    assert multipart.status_code == 201, multipart.text
    assert multipart.json()["content_type"] == "image/webp"

    # Refusals: 4xx with a machine-readable JSON body.
    gif = await client.post(
        "/v1/photos",
        content=b"GIF89a" + b"\x00" * 20,
        headers={**inspector, "Content-Type": "image/gif"},
    )
    assert gif.status_code == 415
    assert gif.json()["error"] == "unsupported_photo_type"
    assert "JPEG" in gif.json()["message"]
    big = await client.post(
        "/v1/photos",
        content=jpeg_like(10_000_001),
        headers={**inspector, "Content-Type": "image/jpeg"},
    )
    assert big.status_code == 413 and big.json()["error"] == "photo_too_large"
    assert big.json()["limit"] == 10_000_000
    empty = await client.post(
        "/v1/photos", content=b"", headers={**inspector, "Content-Type": "image/jpeg"}
    )
    assert empty.status_code == 422 and empty.json()["error"] == "empty_photo"
    no_file = await client.post(
        "/v1/photos", files={"other": ("a.png", image, "image/png")}, headers=inspector
    )
    assert no_file.status_code == 422 and no_file.json()["error"] == "missing_file"
    anonymous = await client.post("/v1/photos", content=image)
    assert anonymous.status_code == 401

    # A report may only reference uploaded photos, with the stored size and type.
    base = {"category": "SJ0101", "grid": GRID, "description": "垃圾堆放 garbage pile"}
    unknown = await client.post(
        "/v1/reports",
        headers=inspector,
        json={
            **base,
            "photos": [
                {"digest": "sha256:" + "0" * 64, "size": 10, "content_type": "image/png"}
            ],
        },
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_photo"
    wrong = await client.post(
        "/v1/reports",
        headers=inspector,
        json={**base, "photos": [{"digest": digest, "size": 99, "content_type": "image/png"}]},
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "photo_mismatch"

    photo = {"digest": digest, "size": len(image), "content_type": "image/png"}
    accepted = await client.post(
        "/v1/reports", headers=inspector, json={**base, "photos": [photo]}
    )
    assert accepted.status_code == 202, accepted.text
    case_no = accepted.json()["case_no"]

    async def reported() -> dict[str, Any] | None:
        r = await client.get(f"/v1/cases/{case_no}", headers=dispatcher)
        return r.json() if r.status_code == 200 else None

    case = await eventually(reported)
    event = case["timeline"][0]
    assert event["type"] == "Reported"
    # digest, size and type are in the event (and the read model)
    recorded = [{k: p[k] for k in photo} for p in event["data"]["photos"]]
    assert recorded == [photo]
    assert [{k: p[k] for k in photo} for p in case["photos"]] == [photo]

    # Downloads: the uploader, staff who may see the case, auditors. Nobody else.
    for headers in (inspector, dispatcher, auditor):
        got = await client.get(f"/v1/photos/{digest}", headers=headers)
        assert got.status_code == 200, got.text
        assert got.content == image
        assert got.headers["content-type"] == "image/png"
        assert got.headers["cache-control"].startswith("private")
    bare = await client.get(f"/v1/photos/{digest.removeprefix('sha256:')}", headers=inspector)
    assert bare.status_code == 200
    outsider = await client.get(f"/v1/photos/{digest}", headers=other_inspector)
    assert outsider.status_code == 404
    assert (await client.get(f"/v1/photos/{digest}")).status_code == 401
    missing = await client.get("/v1/photos/sha256:" + "1" * 64, headers=dispatcher)
    assert missing.status_code == 404
    invalid = await client.get("/v1/photos/not-a-digest", headers=dispatcher)
    assert invalid.status_code == 422 and invalid.json()["error"] == "invalid_digest"

    # The bytes really are in the JetStream Object Store bucket of this deployment.
    obs = await runtime.js.object_store(runtime.photos.bucket)
    stored = await obs.get(digest.replace(":", "-"))
    assert stored.data == image


async def test_deleting_a_deployments_streams_removes_its_photo_bucket() -> None:
    """``delete_streams`` (tests' and benchmarks' clean-up) takes the photo bucket too: left
    behind, every test run added a dozen buckets to the shared server."""
    from nats.js.errors import NotFoundError

    from core.messaging import Topology, connect, delete_streams, ensure_streams
    from core.photos import PhotoStore
    from tests.conftest import nats_url, unique_name

    nc = await connect(nats_url(), "test-photo-bucket")
    js = nc.jetstream()
    topo = Topology(unique_name("TP").upper())
    try:
        await ensure_streams(js, topo)
        await PhotoStore(js, topo).put(png())
        assert await js.object_store(topo.photos_bucket) is not None
        await delete_streams(js, topo)
        for stream in (topo.commands_stream, f"OBJ_{topo.photos_bucket}"):
            with pytest.raises(NotFoundError):
                await js.stream_info(stream)
        await delete_streams(js, topo)  # nothing left: no error either
    finally:
        await delete_streams(js, topo)
        await nc.close()
