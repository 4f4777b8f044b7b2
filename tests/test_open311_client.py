"""An independent Open311 client drives jiesu: the `georeport` package from PyPI (a GeoReport v2
client built on `requests` and `xmltodict`), against the real app under uvicorn on a port below
32768, in both of the client's output formats.

The library reads only (service list, service definition, requests, one request): it has no
method to create a request or to look up a token, so the POST is sent as the specification
describes it (form-encoded, with `api_key`) by plain `requests`, the library's own transport,
and everything after it is read back through the library."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest
import requests
from browser_support import LiveServer, live_server
from conftest import Templates, principal
from georeport import GeoReport

from jiesu.db.base import utcnow
from jiesu.open311 import service


@pytest.fixture
def server(templates: Templates, tmp_path: Path) -> Iterator[LiveServer]:
    urls = cast(Generator[str, None, None], templates.fresh_url("sqlite", True, tmp_path))
    try:
        with live_server(next(urls)) as live:
            yield live
    finally:
        urls.close()


@pytest.mark.parametrize("output_format", ["json", "xml"])
def test_the_georeport_client_lists_defines_posts_and_fetches(
    server: LiveServer, output_format: str
) -> None:
    with server.db.write() as s:
        key, _ = service.issue_key("georeport", "agent1", by=principal(server.db, "admin1"),
                                   db_session=s, now=utcnow())  # fmt: skip
    root = f"{server.url}/open311/v2"
    client = GeoReport(root, jurisdiction="tiny", api_key=key, output_format=output_format)

    services = client.get_service_list()
    codes = {s["service_code"]: s for s in services}
    assert codes["010101"]["service_name"] == "物业服务"
    assert codes["010101"]["group"] == "住房与物业"

    definition = client.get_service_definition("010101")
    attributes = definition["attributes"]
    if output_format == "xml":  # xmltodict: <attributes><attribute>… → {"attribute": [...]}
        attributes = attributes["attribute"]
    request_type = next(a for a in attributes if a["code"] == "request_type")
    assert request_type["datatype"] == "singlevaluelist"
    values = request_type["values"]
    values = values["value"] if output_format == "xml" else values
    assert {"key": "complain", "name": "投诉"} in [dict(v) for v in values]

    posted = requests.post(
        f"{root}/requests.{output_format}",
        data={
            "api_key": client.api_key,
            "jurisdiction_id": "tiny",
            "service_code": "010101",
            "lat": "39.9087",
            "long": "116.3975",
            "description": "路灯不亮，夜里很黑",
            "attribute[request_type]": "help",
            "attribute[contact_time][]": ["morning", "evening"],
        },
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    if output_format == "json":
        number = posted.json()[0]["service_request_id"]
    else:
        import xmltodict

        number = xmltodict.parse(posted.content)["service_requests"]["request"][
            "service_request_id"
        ]

    one = client.get_service_request(number)
    assert one["service_request_id"] == number
    assert one["status"] == "open"
    assert one["service_code"] == "010101"
    assert one["description"].startswith("路灯不亮，夜里很黑")
    assert float(one["lat"]) == pytest.approx(39.9087, abs=1e-6)
    assert float(one["long"]) == pytest.approx(116.3975, abs=1e-6)

    listed = client.get_service_requests(service_code="010101", status="open")
    if isinstance(listed, dict):  # xmltodict: one <request> is a dict, several a list
        listed = [listed]
    assert [r["service_request_id"] for r in listed] == [number]
    by_id = client.get_service_requests(service_request_id=number)
    by_id = [by_id] if isinstance(by_id, dict) else by_id
    assert by_id[0]["service_request_id"] == number

    # the client's errors are the server's: an unknown service is a 404
    with pytest.raises(requests.HTTPError) as caught:
        client.get_service_definition("999999")
    assert caught.value.response is not None and caught.value.response.status_code == 404
