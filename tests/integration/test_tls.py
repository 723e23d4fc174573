"""TLS (SPEC §6): --tls-cert/--tls-key on the server and the agent, --ca on
the agent and the client commands. A self-signed certificate for 127.0.0.1
is made with the openssl command."""
import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import BIN, Spawned, wait_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def cert(tmp_path):
    key = tmp_path / "key.pem"
    crt = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(crt), str(key)


def https(url, token, ca, method="GET", body=None):
    ctx = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15, context=ctx) as r:
        return json.loads(r.read() or b"null")


def test_server_agent_and_cli_over_tls(cert, tmp_path):
    crt, key = cert
    data = tmp_path / "data"
    server = Spawned(["server", "--listen", "127.0.0.1:0", "--data", str(data), "--tls-cert", crt,
                      "--tls-key", key, "--ca", crt], tmp_path / "server.log", "server")
    agent = None
    try:
        url_file = data / "server.url"
        wait_for(url_file.exists, 15, "server.url")
        url = url_file.read_text().strip()
        token = (data / "admin.token").read_text().strip()
        assert url.startswith("https://127.0.0.1:")
        assert https(url + "/healthz", token, crt)["status"] == "ok"
        # Without the CA the certificate is not trusted.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url + "/healthz", timeout=10)
        agent = Spawned(["agent", "--server", url, "--token", token, "--name", "tls-node",
                         "--listen", "127.0.0.1:0", "--work", str(tmp_path / "work"),
                         "--cpus", "2", "--tls-cert", crt, "--tls-key", key, "--ca", crt],
                        tmp_path / "agent.log", "agent")

        def node_ready():
            try:
                n = https(url + "/api/v1/nodes/tls-node", token, crt)
            except urllib.error.HTTPError:
                return None
            return n if n["state"] == "ready" else None
        node = wait_for(node_ready, 30, "the agent to register over TLS")
        assert node["agent_url"].startswith("https://")
        run = https(url + "/api/v1/runs", token, crt, "POST",
                    {"experiment": "tls", "command": ["echo", "over tls"]})
        def run_ended():
            r = https(url + "/api/v1/runs/" + run["id"], token, crt)
            return r if r["status"] in ("completed", "failed") else None
        done = wait_for(run_ended, 60, "the run to end")
        assert done["status"] == "completed", done
        out = subprocess.run([BIN, "logs", run["id"], "--server", url, "--token", token,
                              "--ca", crt], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "over tls" in out.stdout
    finally:
        for proc in (agent, server):
            if proc:
                try:
                    proc.stop()
                finally:
                    proc.cleanup()
