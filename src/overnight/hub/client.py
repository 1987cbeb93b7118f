"""HTTP client for contributors and verifiers: retries lost connections; submissions carry an
idempotency key, so a retry never creates a duplicate."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx

RETRY_STATUS = {502, 503, 504}


class HubClientError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"hub answered {status}: {detail}")
        self.status, self.detail = status, detail


class HubUnavailable(HubClientError):
    """The hub did not answer (connection refused, timeout, 502-504) after the client's retries."""

    def __init__(self, url: str, why: str, tries: int):
        super().__init__(0, why)
        self.args = (f"hub at {url} unreachable after {tries} tries ({why})",)


class HubClient:
    def __init__(self, url: str, token: str | None = None, retries: int = 5, timeout: float = 60.0,
                 backoff: float = 0.5):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.retries, self.backoff = retries, backoff

    def clone(self) -> HubClient:
        """Another client with the same hub and token (for a second thread)."""
        other = HubClient(self.url, None, self.retries, backoff=self.backoff)
        other.http.headers.update(self.http.headers)
        return other

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, path, **kw)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if attempt == self.retries:
                    raise HubUnavailable(self.url, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__,
                                         attempt + 1) from None
            else:
                if r.status_code not in RETRY_STATUS and r.status_code != 429:
                    if r.status_code >= 400:
                        try:
                            detail = r.json().get("detail", r.text)
                        except ValueError:
                            detail = r.text
                        raise HubClientError(r.status_code, str(detail))
                    return r
                if attempt == self.retries:
                    if r.status_code == 429:
                        raise HubClientError(r.status_code, r.text)
                    raise HubUnavailable(self.url, f"HTTP {r.status_code}", attempt + 1)
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    # --- everyone ---------------------------------------------------------------------------------
    def register(self, name: str) -> dict[str, Any]:
        return self.request("POST", "/register", json={"name": name}).json()

    def track(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/tracks/{name}").json()

    def bundle(self, name: str, out: Path) -> Path:
        out.write_bytes(self.request("GET", f"/tracks/{name}/bundle").content)
        return out

    def chain(self, name: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/tracks/{name}/chain").json()

    def leaderboard(self, name: str, tier: str | None = None) -> dict[str, Any]:
        params = {"tier": tier} if tier else {}
        return self.request("GET", f"/tracks/{name}/leaderboard", params=params).json()

    def me(self) -> dict[str, Any]:
        return self.request("GET", "/me").json()

    # --- admin ------------------------------------------------------------------------------------
    def create_account(self, name: str, role: str = "verifier") -> dict[str, Any]:
        return self.request("POST", "/admin/accounts", json={"name": name, "role": role}).json()

    def rotate(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/admin/accounts/{name}/rotate").json()

    def revoke(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/admin/accounts/{name}/revoke").json()

    def create_track(self, name: str, spec: str, program: str, bundle: bytes) -> dict[str, Any]:
        body = {"name": name, "spec": spec, "program": program, "bundle": base64.b64encode(bundle).decode()}
        return self.request("POST", "/admin/tracks", json=body).json()

    # --- contributors -----------------------------------------------------------------------------
    def submit(self, track: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/tracks/{track}/submissions", json=body).json()

    def submission(self, sub_id: int) -> dict[str, Any]:
        return self.request("GET", f"/submissions/{sub_id}").json()

    def submissions(self) -> list[dict[str, Any]]:
        return self.request("GET", "/submissions").json()

    # --- verifiers --------------------------------------------------------------------------------
    def claim(self, track: str | None = None) -> dict[str, Any] | None:
        r = self.request("POST", "/verify/claim", json={"track": track})
        return None if r.status_code == 204 else r.json()

    def heartbeat(self, sub_id: int) -> dict[str, Any]:
        return self.request("POST", f"/verify/{sub_id}/heartbeat").json()

    def report(self, sub_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/verify/{sub_id}/report", json=body).json()
