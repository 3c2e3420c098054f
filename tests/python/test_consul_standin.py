"""consul-dev against an independent client: the PyPI `py-consul` package.

Starts the real `consul-dev` binary on a free port, registers a service whose HTTP check
points at a tiny HTTP server run by this test, and follows it through py-consul's health
API with blocking queries, TTL updates and ACL tokens.
"""
import http.server
import subprocess
import threading
import time

import consul
import pytest

from conftest import binary, free_port, stop, wait_http


class _Target(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server naming)
        body = b"ok"
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def target():
    """A local HTTP server whose status code the test sets through `target.status`."""
    handler = type("Handler", (_Target,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.handler = handler
    yield server
    server.shutdown()
    server.server_close()


def _start(*args):
    port = free_port()
    proc = subprocess.Popen(
        [str(binary("consul-dev")), "--bind", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/v1/status/leader", proc=proc)
    return proc, port


@pytest.fixture
def consul_dev():
    proc, port = _start()
    yield port
    stop(proc)


def _eventually(what, probe, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_http_check_passing_blocking_health_and_deregister(consul_dev, target):
    c = consul.Consul(host="127.0.0.1", port=consul_dev)
    url = f"http://127.0.0.1:{target.server_address[1]}/health"
    assert c.agent.service.register(
        "inference",
        service_id="node-1",
        address="127.0.0.1",
        port=target.server_address[1],
        tags=["v1"],
        check=consul.Check.http(url, interval="1s", timeout="1s"),
    )

    _eventually(
        "the HTTP check to pass",
        lambda: c.agent.checks()["service:node-1"]["Status"] == "passing",
    )
    assert "200 OK" in c.agent.checks()["service:node-1"]["Output"]

    index, entries = c.health.service("inference", passing=True)
    assert int(index) >= 1
    assert [e["Service"]["ID"] for e in entries] == ["node-1"]
    entry = entries[0]
    assert entry["Service"]["Address"] == "127.0.0.1"
    assert {ch["CheckID"] for ch in entry["Checks"]} == {"serfHealth", "service:node-1"}
    assert all(ch["Status"] == "passing" for ch in entry["Checks"])

    # A blocking query with the returned index waits until something changes ...
    result = {}

    def blocking_read():
        result["answer"] = c.health.service("inference", index=index, wait="20s", passing=True)

    reader = threading.Thread(target=blocking_read)
    started = time.monotonic()
    reader.start()
    reader.join(timeout=1.0)
    assert reader.is_alive(), "the blocking query returned without a change"

    # ... such as the service starting to fail its check.
    target.handler.status = 500
    reader.join(timeout=15.0)
    assert not reader.is_alive(), "the blocking query did not return after the change"
    new_index, passing_now = result["answer"]
    assert int(new_index) > int(index)
    assert passing_now == []
    assert time.monotonic() - started < 15.0
    assert c.agent.checks()["service:node-1"]["Status"] == "critical"

    # A wait that expires with no change returns the same index.
    same_index, _ = c.health.service("inference", index=new_index, wait="300ms")
    assert same_index == new_index

    assert c.agent.service.deregister("node-1")
    assert "node-1" not in c.agent.services()
    _, entries = c.health.service("inference")
    assert entries == []


def test_ttl_check_through_py_consul(consul_dev):
    c = consul.Consul(host="127.0.0.1", port=consul_dev)
    assert c.agent.service.register("worker", service_id="w1", check=consul.Check.ttl("30s"))
    assert c.agent.checks()["service:w1"]["Status"] == "critical"
    assert c.agent.check.ttl_pass("service:w1", "ready")
    check = c.agent.checks()["service:w1"]
    assert (check["Status"], check["Output"]) == ("passing", "ready")
    assert c.agent.check.ttl_warn("service:w1")
    _, entries = c.health.service("worker", passing=True)
    assert entries == [], "warning is not passing"
    _, entries = c.health.service("worker")
    assert len(entries) == 1
    assert c.catalog.services()[1] == {"consul": [], "worker": []}


def test_acl_token_required():
    proc, port = _start("--token", "s3cret")
    try:
        anonymous = consul.Consul(host="127.0.0.1", port=port)
        with pytest.raises(consul.ACLPermissionDenied):
            anonymous.agent.service.register("web", service_id="web-1")
        wrong = consul.Consul(host="127.0.0.1", port=port, token="guess")
        with pytest.raises(consul.ACLPermissionDenied):
            wrong.agent.services()
        good = consul.Consul(host="127.0.0.1", port=port, token="s3cret")
        assert good.agent.service.register("web", service_id="web-1")
        assert "web-1" in good.agent.services()
    finally:
        stop(proc)


def test_sigterm_stops_consul_dev_cleanly():
    proc, port = _start()
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    output = proc.stdout.read().decode()
    assert "development stand-in; production uses real Consul" in output
