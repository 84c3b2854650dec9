"""`levered login` end to end: the PKCE loopback flow with a scripted browser, silent refresh,
logout, and --with-token."""

from __future__ import annotations

import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

from tests.cli.conftest import levered
from tests.conftest import Org


async def _browser(url: str, email: str, password: str) -> None:
    """What a person does in the browser: open the form, submit it, follow the redirect."""
    async with httpx.AsyncClient() as browser:
        form = await browser.get(url)
        assert form.status_code == 200 and "<form" in form.text
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
        fields |= {"email": email, "password": password}
        submitted = await browser.post(url, data=fields)
        assert submitted.status_code == 303, submitted.text
        callback = await browser.get(submitted.headers["location"])
        assert callback.status_code == 200


async def test_login_refresh_whoami_logout(
    cli_env: dict[str, str], org: Org, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "login.err"
    async with await anyio.open_process(
        [sys.executable, "-m", "cli.app", "login", "--no-browser"],
        env=cli_env,
        stderr=stderr_path.open("wb"),
    ) as process:
        url = ""
        with anyio.fail_after(30):
            while not url:
                await anyio.sleep(0.1)
                found = re.search(r"(http://\S+/oauth/authorize\S+)", stderr_path.read_text())
                url = found.group(1) if found else ""
        query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
        await _browser(url, org.email, org.password)
        with anyio.fail_after(30):
            assert await process.wait() == 0, stderr_path.read_text()

    credentials = Path(cli_env["LEVERED_CONFIG_DIR"]) / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    who = await levered("whoami", "--json", env=cli_env)
    body: Any = who.json()
    assert body["user"]["email"] == org.email and body["auth"] == "user"

    # An expired access token is refreshed silently, and the refresh token rotates.
    stored = msgspec.json.decode(credentials.read_bytes())
    (entry,) = stored.values()
    old_refresh = entry["refresh_token"]
    entry["expires_at"] = 0
    credentials.write_bytes(msgspec.json.encode(stored))
    again = await levered("whoami", "--json", env=cli_env)
    assert again.code == 0, again.stderr
    (rotated,) = msgspec.json.decode(credentials.read_bytes()).values()
    assert rotated["refresh_token"] != old_refresh

    out = await levered("logout", env=cli_env)
    assert out.code == 0 and "logged out" in out.stderr
    after = await levered("whoami", env=cli_env)
    assert after.code == 3


async def test_wrong_password_never_logs_in(cli_env: dict[str, str], org: Org) -> None:
    async with httpx.AsyncClient() as browser:
        url = (
            f"{cli_env['LEVERED_API_URL']}/oauth/authorize?response_type=code&client_id=x"
            "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge="
            + "a" * 43
            + "&code_challenge_method=S256&state=s"
        )
        form = await browser.get(url)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
        refused = await browser.post(url, data=fields | {"email": org.email, "password": "wrong"})
        assert refused.status_code == 401 and "location" not in refused.headers


async def test_login_with_token_from_stdin(cli_env: dict[str, str], org: Org) -> None:
    logged = await levered("login", "--with-token", env=cli_env, stdin=org.api_key + "\n")
    assert logged.code == 0, logged.stderr
    who = await levered("whoami", "--json", env=cli_env)
    assert who.json()["organization"]["id"] == str(org.id)
    bad = await levered("login", "--with-token", env=cli_env, stdin="lvk_nope_nope\n")
    assert bad.code == 3
