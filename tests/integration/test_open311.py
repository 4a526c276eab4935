"""Open311 GeoReport v2 against the running system: every endpoint in JSON and XML, the
spec's error format, api_key handling (demo key, issue, revoke), code and status mapping."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from tests.conftest import eventually
from tests.intake_support import login

BASE = "/open311/v2"
DEMO_KEY = "demo-open311-key"
GRID = "520102001001"


def xml(response: Any) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml"), response.headers
    return ET.fromstring(response.content)


def assert_error(response: Any, code: int, fmt: str = "json") -> str:
    """The spec's error shape, HTTP status equal to the code; returns the description."""
    assert response.status_code == code, response.text
    if fmt == "xml":
        root = xml(response)
        assert root.tag == "errors"
        error = root.find("error")
        assert error is not None and error.findtext("code") == str(code)
        description = error.findtext("description") or ""
    else:
        body = response.json()
        assert isinstance(body, list) and set(body[0]) == {"code", "description"}
        assert body[0]["code"] == code
        description = body[0]["description"]
    assert description
    return description


async def test_services_and_definitions(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    services = await client.get(f"{BASE}/services.json")
    assert services.status_code == 200
    items = services.json()
    codes = {s["service_code"] for s in items}
    assert "SJ0101" in codes and "BJ0101" in codes
    # Care visits and disputes name private households: not offered to the public.
    assert not any(c.startswith(("ZL03", "ZL01")) for c in codes)
    first = next(s for s in items if s["service_code"] == "BJ0101")
    assert first["metadata"] is True and first["type"] == "realtime"  # it asks a question
    assert "上水井盖" in first["service_name"] and "manhole" in first["service_name"]
    assert set(first) >= {"service_code", "service_name", "description", "keywords", "group"}

    as_xml = xml(await client.get(f"{BASE}/services.xml"))
    assert as_xml.tag == "services"
    xml_codes = [s.findtext("service_code") for s in as_xml.findall("service")]
    assert sorted(xml_codes) == sorted(codes)
    city = runtime.ref.jurisdiction.city_code
    scoped = await client.get(f"{BASE}/services.json", params={"jurisdiction_id": city})
    assert scoped.status_code == 200
    assert_error(await client.get(f"{BASE}/services.json", params={"jurisdiction_id": "x"}), 404)

    definition = await client.get(f"{BASE}/services/SJ0102.json")
    assert definition.json() == {"service_code": "SJ0102", "attributes": []}
    lower = await client.get(f"{BASE}/services/sj0101.json")  # codes match case-insensitively
    assert lower.json()["service_code"] == "SJ0101"
    root = xml(await client.get(f"{BASE}/services/SJ0101.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "SJ0101"
    assert_error(await client.get(f"{BASE}/services/NOPE.json"), 404)
    assert_error(await client.get(f"{BASE}/services/ZL0301.xml"), 404, "xml")
    assert_error(await client.get(f"{BASE}/services.csv"), 404)
    assert_error(await client.get(f"{BASE}/no-such-thing.json"), 404)
    assert_error(await client.get(f"{BASE}/no-such-thing.xml"), 404, "xml")

    discovery = await client.get(f"{BASE}/discovery.json")
    assert discovery.json()["endpoints"][0]["specification"].endswith("GeoReport_v2")
    assert xml(await client.get(f"{BASE}/discovery.xml")).tag == "discovery"


async def test_requests_round_trip_keys_and_statuses(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    form = {
        "api_key": DEMO_KEY,
        "service_code": "SJ0101",
        "lat": str(lat),
        "long": str(lon),
        "address_string": "新華路 12 號",
        "description": "路口垃圾堆積 garbage piled at the crossing",
        "first_name": "Li",
        "last_name": "Lei",
        "email": "li.lei@example.org",
        "phone": "13800000000",
    }

    # api_key: required, must be valid and active.
    missing = await client.post(f"{BASE}/requests.json", data={**form, "api_key": ""})
    assert "api_key" in assert_error(missing, 403)
    wrong = await client.post(f"{BASE}/requests.xml", data={**form, "api_key": "nope-nope"})
    assert "invalid" in assert_error(wrong, 403, "xml")

    # Validation errors in the spec's format.
    assert_error(await client.post(f"{BASE}/requests.json", data={**form, "lat": "x"}), 400)
    outside = await client.post(
        f"{BASE}/requests.json", data={**form, "lat": "39.9", "long": "116.4"}
    )
    assert "outside" in assert_error(outside, 400)
    no_place = {k: v for k, v in form.items() if k not in ("lat", "long")}
    assert "location" in assert_error(
        await client.post(f"{BASE}/requests.json", data=no_place), 400
    )
    bad_code = await client.post(f"{BASE}/requests.json", data={**form, "service_code": "ZZ"})
    assert_error(bad_code, 404)
    bad_phone = await client.post(f"{BASE}/requests.json", data={**form, "phone": "call me"})
    assert "phone" in assert_error(bad_phone, 400)

    created = await client.post(f"{BASE}/requests.json", data=form)
    assert created.status_code == 201, created.text
    [item] = created.json()
    request_id, token = item["service_request_id"], item["token"]
    assert request_id.startswith("GD-") and token

    # XML POST with address_id (= grid code) instead of coordinates.
    by_grid = {k: v for k, v in form.items() if k not in ("lat", "long")}
    created_xml = await client.post(
        f"{BASE}/requests.xml", data={**by_grid, "address_id": GRID, "service_code": "bj0105"}
    )
    assert created_xml.status_code == 201, created_xml.text
    request = xml(created_xml).find("request")
    assert request is not None
    xml_id, xml_token = request.findtext("service_request_id"), request.findtext("token")
    assert xml_id and xml_token

    # tokens/{token}: the id once the case is on record.
    async def token_ready() -> Any:
        r = await client.get(f"{BASE}/tokens/{token}.json")
        return r.json() if r.status_code == 200 else None

    assert await eventually(token_ready) == [{"service_request_id": request_id, "token": token}]

    async def xml_token_ready() -> Any:  # another case: on record in its own time
        r = await client.get(f"{BASE}/tokens/{xml_token}.xml")
        return r if r.status_code == 200 else None

    token_xml = xml(await eventually(xml_token_ready))
    assert token_xml.find("request/service_request_id").text == xml_id  # type: ignore[union-attr]
    assert_error(await client.get(f"{BASE}/tokens/unknown-token.json"), 404)

    # requests/{id}: service_code maps back to the category, status open, no personal data.
    async def stored() -> Any:
        r = await client.get(f"{BASE}/requests/{xml_id}.json")
        return r.json() if r.status_code == 200 else None

    await eventually(stored)
    [one] = (await client.get(f"{BASE}/requests/{request_id}.json")).json()
    assert one["service_code"] == "SJ0101" and one["status"] == "open"
    assert one["address_id"] == GRID and abs(one["lat"] - lat) < 1e-9
    assert one["requested_datetime"].endswith("+08:00")
    assert "Li Lei" not in str(one) and "13800000000" not in str(one)
    assert "li.lei" not in str(one)
    one_xml = xml(await client.get(f"{BASE}/requests/{xml_id}.xml"))
    assert one_xml.tag == "service_requests"
    assert one_xml.findtext("request/service_code") == "BJ0105"
    assert one_xml.findtext("request/status") == "open"
    assert_error(await client.get(f"{BASE}/requests/GD-0000-0000-0000.json"), 404)
    assert_error(await client.get(f"{BASE}/requests/GD-0000-0000-0000.xml"), 404, "xml")

    # The reporter type is open311 inside the system.
    dispatcher = await login(client, "dispatcher")
    case = (await client.get(f"/v1/cases/{request_id}", headers=dispatcher)).json()
    assert case["source"] == "open311" and case["category"] == "SJ0101"
    assert case["timeline"][0]["data"]["reporter"]["type"] == "open311"

    # Our terminal statuses read as closed: the dispatcher refuses the BJ0105 request.
    refused = await client.post(
        f"/v1/cases/{xml_id}/actions/reject",
        json={"reason": "路燈已於昨日修復 already repaired"},
        headers=dispatcher,
    )
    assert refused.status_code == 200, refused.text

    async def closed() -> Any:
        r = await client.get(f"{BASE}/requests/{xml_id}.json")
        return r.json()[0] if r.json()[0]["status"] == "closed" else None

    assert "不予立案" in (await eventually(closed))["status_notes"]

    # Search: by id list, service_code, status, dates — JSON and XML.
    listed = (await client.get(f"{BASE}/requests.json")).json()
    assert {r["service_request_id"] for r in listed} == {request_id, xml_id}
    both = await client.get(
        f"{BASE}/requests.json", params={"service_request_id": f"{request_id},{xml_id}"}
    )
    assert len(both.json()) == 2
    only_open = (await client.get(f"{BASE}/requests.json", params={"status": "open"})).json()
    assert [r["service_request_id"] for r in only_open] == [request_id]
    only_closed = await client.get(f"{BASE}/requests.xml", params={"status": "closed"})
    assert [r.findtext("service_request_id") for r in xml(only_closed).findall("request")] == [
        xml_id
    ]
    by_code = (await client.get(f"{BASE}/requests.json", params={"service_code": "BJ0105"})).json()
    assert [r["service_request_id"] for r in by_code] == [xml_id]
    window = {"start_date": "2026-11-23T00:00:00+08:00", "end_date": "2026-11-24T00:00:00+08:00"}
    assert len((await client.get(f"{BASE}/requests.json", params=window)).json()) == 2
    past = {"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2026-02-01T00:00:00+08:00"}
    assert (await client.get(f"{BASE}/requests.json", params=past)).json() == []
    assert_error(await client.get(f"{BASE}/requests.json", params={"status": "maybe"}), 400)
    assert_error(await client.get(f"{BASE}/requests.json", params={"start_date": "soon"}), 400)
    assert_error(
        await client.get(f"{BASE}/requests.xml", params={**window, "start_date": "2027-01-01"}),
        400,
        "xml",
    )


async def test_api_keys_are_issued_per_client_and_revocable(system: dict[str, Any]) -> None:
    client, runtime = system["client"], system["runtime"]
    admin = await login(client, "admin")
    dispatcher = await login(client, "dispatcher")
    assert (await client.get("/v1/admin/api-clients", headers=dispatcher)).status_code == 403
    issued = await client.post(
        "/v1/admin/api-clients", json={"name": "Newspaper widget"}, headers=admin
    )
    assert issued.status_code == 201, issued.text
    client_id, api_key = issued.json()["client_id"], issued.json()["api_key"]
    listed = (await client.get("/v1/admin/api-clients", headers=admin)).json()["items"]
    assert {c["client_id"] for c in listed} >= {"demo", client_id}
    assert all("api_key" not in c for c in listed)
    # Only the hash is stored.
    async with runtime.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT key_sha256 FROM api_clients WHERE client_id = $1", client_id
        )
    assert stored != api_key and len(stored) == 64

    form = {"api_key": api_key, "service_code": "SJ0101", "address_id": GRID}
    assert (await client.post(f"{BASE}/requests.json", data=form)).status_code == 201
    revoked = await client.delete(f"/v1/admin/api-clients/{client_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert "revoked" in assert_error(await client.post(f"{BASE}/requests.json", data=form), 403)
    # The demo key still works; re-loading the shipped clients does not revive a revoked one.
    demo = {**form, "api_key": DEMO_KEY}
    assert (await client.post(f"{BASE}/requests.json", data=demo)).status_code == 201
    await client.delete("/v1/admin/api-clients/demo", headers=admin)
    from core import apikeys

    async with runtime.pool.acquire() as conn:
        await apikeys.setup(conn, runtime.settings.city_dir)
    assert_error(await client.post(f"{BASE}/requests.json", data=demo), 403)
    missing = await client.delete("/v1/admin/api-clients/nobody", headers=admin)
    assert missing.status_code == 404


JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4


async def test_utf8_forms_media_attributes_and_refusals(system: dict[str, Any]) -> None:
    """Issue 17 item 7: raw UTF-8 form bodies (as ``curl -d`` sends them), a multipart photo in
    ``media``, ``media_url`` returned as given, attributes from the category's questions, and
    every refusal in the spec's error list."""
    client, runtime = system["client"], system["runtime"]
    lat, lon = runtime.ref.jurisdiction.grid(GRID).centroid
    where = f"lat={lat}&long={lon}"
    raw = f"api_key={DEMO_KEY}&service_code=SJ0101&{where}&description=路口垃圾&" \
          "media_url=https://example.org/路口.jpg"
    form = {"content-type": "application/x-www-form-urlencoded"}
    created = await client.post(f"{BASE}/requests.json", content=raw.encode(), headers=form)
    assert created.status_code == 201, created.text
    utf8_id = created.json()[0]["service_request_id"]
    # A client that names another charset is read in it.
    gbk = f"api_key={DEMO_KEY}&service_code=SJ0101&{where}&description=井盖缺失".encode("gbk")
    by_gbk = await client.post(f"{BASE}/requests.json", content=gbk,
                               headers={"content-type": f"{form['content-type']}; charset=GBK"})
    assert by_gbk.status_code == 201, by_gbk.text
    gbk_id = by_gbk.json()[0]["service_request_id"]
    latin = f"api_key={DEMO_KEY}&service_code=SJ0101&description=".encode() + b"\xe9\xff"
    assert "UTF-8" in assert_error(
        await client.post(f"{BASE}/requests.json", content=latin, headers=form), 400
    ).upper()

    # Attributes: SJ0404 asks for the water depth (required), SJ0101 does not require any.
    definition = (await client.get(f"{BASE}/services/SJ0404.json")).json()
    depth, blocked = definition["attributes"]
    assert depth["code"] == "depth_cm" and depth["required"] is True
    assert depth["datatype"] == "number" and "积水深度" in depth["description"]
    assert blocked["datatype"] == "singlevaluelist" and {v["key"] for v in blocked["values"]} == {
        "true", "false"
    }
    english = await client.get(f"{BASE}/services/SJ0404.json", headers={"accept-language": "en"})
    assert "Water depth" in english.json()["attributes"][0]["description"]
    listed = {s["service_code"]: s for s in (await client.get(f"{BASE}/services.json")).json()}
    assert listed["SJ0404"]["metadata"] is True and listed["SJ0102"]["metadata"] is False
    definition_xml = xml(await client.get(f"{BASE}/services/SJ0101.xml"))
    assert definition_xml.findtext("attributes/attribute/code") == "volume"
    assert len(definition_xml.findall("attributes/attribute/values/value")) == 3
    flood = {"api_key": DEMO_KEY, "service_code": "SJ0404", "address_id": GRID}
    missing = await client.post(f"{BASE}/requests.json", data=flood)
    assert "depth_cm" in assert_error(missing, 400)
    wrong = await client.post(f"{BASE}/requests.xml",
                              data={**flood, "attribute[depth_cm]": "deep"})
    assert "number" in assert_error(wrong, 400, "xml")

    # Multipart with the photo in ``media`` and the attributes.
    multipart = await client.post(
        f"{BASE}/requests.json",
        data={**flood, "attribute[depth_cm]": "40", "attribute[traffic_blocked]": "true",
              "description": "地下通道积水"},
        files={"media": ("积水.jpg", JPEG, "image/jpeg")},
    )
    assert multipart.status_code == 201, multipart.text
    media_id = multipart.json()[0]["service_request_id"]
    two = await client.post(
        f"{BASE}/requests.json", data=flood,
        files=[("media", ("a.jpg", JPEG, "image/jpeg")), ("other", ("b.jpg", JPEG, "image/jpeg"))],
    )
    assert "media" in assert_error(two, 400)
    elsewhere = await client.post(f"{BASE}/requests.xml", data=flood,
                                  files={"photo": ("a.jpg", JPEG, "image/jpeg")})
    assert "'media'" in assert_error(elsewhere, 400, "xml")
    not_a_photo = await client.post(
        f"{BASE}/requests.json", data={**flood, "attribute[depth_cm]": "1"},
        files={"media": ("a.jpg", b"GIF89a....", "image/jpeg")},
    )
    assert "JPEG" in assert_error(not_a_photo, 415)
    unauthorised = await client.post(f"{BASE}/requests.json", data={**flood, "api_key": "x"},
                                     files={"media": ("a.jpg", JPEG, "image/jpeg")})
    assert_error(unauthorised, 403)
    assert_error(await client.post(f"{BASE}/requests.json", json={"api_key": DEMO_KEY}), 400)

    async def stored(case_no: str) -> Any:
        r = await client.get(f"{BASE}/requests/{case_no}.json")
        return r.json()[0] if r.status_code == 200 else None

    utf8 = await eventually(lambda: stored(utf8_id))
    assert utf8["description"] == "路口垃圾" and utf8["media_url"] == "https://example.org/路口.jpg"
    assert (await eventually(lambda: stored(gbk_id)))["description"] == "井盖缺失"
    assert (await eventually(lambda: stored(media_id)))["media_url"] is None
    dispatcher = await login(client, "dispatcher")
    case = (await client.get(f"/v1/cases/{media_id}", headers=dispatcher)).json()
    assert case["answers"] == {"depth_cm": 40, "traffic_blocked": True}
    assert case["description"] == "地下通道积水"
    [photo] = case["photos"]
    assert photo["size"] == len(JPEG) and photo["name"] == "积水.jpg"
    image = await client.get(f"/v1/photos/{photo['digest']}", headers=dispatcher)
    assert image.status_code == 200 and image.content == JPEG
    export = await client.get("/v1/queue/export.csv", headers=dispatcher)
    assert '"{""depth_cm"":40,""traffic_blocked"":true}"' in export.text

    discovery = (await client.get(f"{BASE}/discovery.json")).json()
    names = {c["name"] for c in discovery["capabilities"]}
    assert {"media_upload", "media_url", "attributes", "service_definitions"} <= names
    assert set(discovery["endpoints"][0]["capabilities"]) == names
    discovery_xml = xml(await client.get(f"{BASE}/discovery.xml"))
    assert len(discovery_xml.findall("capabilities/capability")) == len(names)
