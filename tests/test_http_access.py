"""Who may use `trainbot serve` without a token, and what its web session cookie holds, over real HTTP.

A reverse proxy on the same host makes every request loopback: with API tokens configured, loopback alone must not
make a request anonymous. A second loopback address (127.0.0.2) stands in for such a proxy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from tests.api_env import serving
from tests.slack_env import fake_config

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}
BODY = {"gpu_id": "0", "output_dir": "output/a"}
PROXY = "127.0.0.2"


class From(HTTPAdapter):
    """Connections from one local address (the proxy's, or a plain client's)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", From(address))
    return session


def cookie_payload(value: str) -> dict[str, Any]:
    """What a signed cookie carries (itsdangerous: base64 JSON, zlib'd when it starts with a dot): readable by anyone
    who holds the cookie, only not forgeable."""
    raw = value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    loaded: dict[str, Any] = json.loads(zlib.decompress(data) if value.startswith(".") else data)
    return loaded


def test_with_tokens_loopback_without_a_token_is_refused_unless_the_config_says_so(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path, TOKENS) as api:
        anonymous = requests.post(f"{api.url}/training/llm/jobs", json=BODY, timeout=10)
        assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]
        assert requests.get(f"{api.url}/training/all/jobs", timeout=10).status_code == 401
        page = requests.get(f"{api.url}/", timeout=10, allow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/signin")
        mine = requests.post(
            f"{api.url}/training/llm/jobs", json=BODY, timeout=10, headers={"Authorization": "Bearer tok-ann"}
        )
        assert mine.status_code == 201 and mine.json()["user_id"] == "UANN"
    with open(tmp_path / "trainbot.toml", "a") as f:
        f.write(f'[http]\nanonymous_loopback_with_tokens = true\ntrusted_proxies = ["{PROXY}"]\n')
    with serving(tmp_path, TOKENS) as api:  # said explicitly: loopback is anonymous again
        again = requests.post(f"{api.url}/training/llm/jobs", json=BODY | {"output_dir": "output/b"}, timeout=10)
        assert again.status_code == 201 and again.json()["user_id"] == "http:anonymous"
        # through a proxy it trusts, the client is the one the proxy names: not loopback, so not anonymous
        with client(PROXY) as proxy:
            remote = proxy.post(
                f"{api.url}/training/llm/jobs",
                json=BODY | {"output_dir": "output/c"},
                timeout=10,
                headers={"X-Forwarded-For": "203.0.113.7"},
            )
            assert remote.status_code == 401
            local = proxy.get(f"{api.url}/training/all/jobs", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10)
            assert local.status_code == 200


def test_the_session_cookie_is_secure_through_a_trusted_proxy_only_and_holds_no_trace_of_the_token(
    tmp_path: Path,
) -> None:
    fake_config(tmp_path, sections=f'[http]\ntrusted_proxies = ["{PROXY}"]\n')
    https = {"X-Forwarded-Proto": "https"}
    with serving(tmp_path, TOKENS) as api:
        with client(PROXY) as proxy:  # the proxy says the page was served over HTTPS: believed
            signed = proxy.post(
                f"{api.url}/signin", data={"token": "tok-ann"}, headers=https, timeout=10, allow_redirects=False
            )
            assert signed.status_code == 303
            assert "secure" in signed.headers["set-cookie"].lower().split("; ")
        with client("127.0.0.1") as direct:  # anyone else saying so: not believed (the page came over HTTP)
            plain = direct.post(
                f"{api.url}/signin", data={"token": "tok-ann"}, headers=https, timeout=10, allow_redirects=False
            )
            assert plain.status_code == 303
            assert "secure" not in plain.headers["set-cookie"].lower().split("; ")

            value = direct.cookies["trainbot_session"]
            payload = json.dumps(cookie_payload(value))
            assert "UANN" in payload  # the caller's name, and nothing made from the token
            token = b"tok-ann"
            derived = [token.decode(), base64.b64encode(token).decode().rstrip("=")]
            derived += [getattr(hashlib, name)(token).hexdigest()[:16] for name in ("sha256", "sha1", "md5")]
            assert not [d for d in derived if d in payload], payload

            page = direct.get(f"{api.url}/", timeout=10, allow_redirects=False)
            assert page.status_code == 200 and "UANN" in page.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            out = direct.post(f"{api.url}/signout", data={"csrf": csrf.group(1)}, timeout=10, allow_redirects=False)
            assert out.status_code == 303
        # a copy of the cookie taken before signing out is worth nothing after
        replayed = requests.get(f"{api.url}/", cookies={"trainbot_session": value}, timeout=10, allow_redirects=False)
        assert replayed.status_code == 303 and replayed.headers["location"].startswith("/signin")
