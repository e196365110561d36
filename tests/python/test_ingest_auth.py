"""Who may send locations over HTTP and OsmAnd once authentication is configured (docs/security.md,
docs/ingest-http.md), and both endpoints over TLS (`--https`, `--osmands`).

The broker has a users file (a driver whose vehicle is `au-user`), an HS256 secret for tokens
and a `--devices` file (`au-listed`): the location post takes a driver's token only for its own
vehicle and an operator's for any, refuses riders and integrators (403) and anonymous callers
(401); the OsmAnd listener, whose requests carry no credentials, lets in the listed devices and
the users' driver vehicles and answers 404 to any other."""

import json
import time

import pytest
import requests

from ingest_util import LAT, LON, base_url, error_of, location_url, now_ms
from security_util import make_certs, token, users_file

SECRET = "ingest-secret"


@pytest.fixture(scope="module")
def broker(fleetmq_path, tmp_path_factory):
    from harness import BrokerProcess
    work = tmp_path_factory.mktemp("ingest-auth")
    users = users_file(fleetmq_path, work / "users.toml",
                       [{"name": "dora", "password": "pw", "role": "driver",
                         "vehicle": "au-user"}])
    devices = work / "devices.txt"
    devices.write_text("# phones\nau-listed\n")
    certs = make_certs(fleetmq_path, work / "certs")
    b = BrokerProcess.start(fleetmq_path, [
        "--users", users, "--jwt-secret", SECRET, "--devices", str(devices),
        "--osmand", "127.0.0.1:0", "--osmands", "127.0.0.1:0", "--https", "127.0.0.1:0",
        "--tls-cert", certs["server"], "--tls-key", certs["server_key"]], work)
    b.ca = certs["ca"]
    yield b
    b.stop()


def fix() -> str:
    return json.dumps({"lat": LAT, "lon": LON, "ts": now_ms() - 1000})


@pytest.mark.parametrize("who, vehicle, status", [
    (("bus-7", "driver", {}), "bus-7", 202),
    (("bus-7", "driver", {}), "bus-8", 403),
    (("ann", "rider", {"vehicles": ["bus-7"]}), "bus-7", 403),
    (("int", "integrator", {}), "bus-7", 403),
    (("op", "operator", {}), "bus-9", 202),
    (None, "bus-7", 401),
    ("not-a-token", "bus-7", 401),
])
def test_location_post_rights(broker, who, vehicle, status):
    headers = {"content-type": "application/json"}
    if isinstance(who, tuple):
        sub, role, extra = who
        headers["authorization"] = f"Bearer {token(SECRET, sub, role, **extra)}"
    elif who is not None:
        headers["authorization"] = f"Bearer {who}"
    resp = requests.post(location_url(broker, vehicle), data=fix(), headers=headers, timeout=10)
    assert resp.status_code == status, resp.text
    if status != 202:
        assert error_of(resp)["code"] in ("FORBIDDEN", "UNAUTHORIZED")
    # `?token=` works as well as the header.
    if status == 202:
        t = headers["authorization"].split(" ", 1)[1]
        again = requests.post(f"{location_url(broker, vehicle)}?token={t}", timeout=10,
                              data=json.dumps({"lat": LAT, "lon": LON, "ts": now_ms()}))
        assert again.status_code == 202, again.text


@pytest.mark.parametrize("device, status", [
    ("au-listed", 200),   # --devices
    ("au-user", 200),     # the users file's driver vehicle
    ("au-stranger", 404),
])
def test_osmand_devices(broker, device, status):
    url = f"{base_url(broker, 'osmand')}/?id={device}&lat={LAT}&lon={LON}&timestamp={int(time.time())}"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == status, resp.text
    if status == 404:
        assert error_of(resp)["code"] == "NOT_FOUND"
    body = {"device_id": device, "location": {"coords": {"latitude": LAT, "longitude": LON}}}
    resp = requests.post(f"{base_url(broker, 'osmand')}/", data=json.dumps(body), timeout=10,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text


def test_both_over_tls(broker):
    _, https_port = broker.listeners["https"]
    _, osmands_port = broker.listeners["osmands"]
    with requests.Session() as s:
        ca = broker.ca  # per request: a session's `verify` loses to REQUESTS_CA_BUNDLE
        op = token(SECRET, "op", "operator")
        for i in range(3):  # one keep-alive TLS connection
            resp = s.post(f"https://localhost:{https_port}/api/v1/vehicles/au-tls/location",
                          data=json.dumps({"lat": LAT + i * 1e-4, "lon": LON,
                                           "ts": now_ms() - 30_000 + i * 10_000}),
                          headers={"authorization": f"Bearer {op}"}, timeout=10, verify=ca)
            assert resp.status_code == 202, resp.text
        resp = s.get(f"https://localhost:{osmands_port}/?id=au-listed&lat={LAT}&lon={LON}",
                     timeout=10, verify=ca)
        assert resp.status_code == 200 and resp.content == b""
        resp = s.get(f"https://localhost:{osmands_port}/?id=au-stranger&lat={LAT}&lon={LON}",
                     timeout=10, verify=ca)
        assert resp.status_code == 404
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{osmands_port}/?id=au-listed&lat=1&lon=2", timeout=10)
