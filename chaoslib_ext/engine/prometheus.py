"""An instant query against Prometheus's HTTP API (GET /api/v1/query), for guards."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class QueryFailed(Exception):
    """Prometheus could not be asked, or did not answer with numbers."""


def instant_query(base_url: str, query: str, timeout: float) -> list[float]:
    """The values of an instant query: one per series of a vector, or the scalar's one."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # Prometheus explains a bad query in the body
        raise QueryFailed(f"Prometheus refused the query: {_reason(error)}") from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError
        raise QueryFailed(
            f"cannot query Prometheus at {base_url}: {getattr(error, 'reason', error)}"
        ) from None
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict):
        kind = data.get("resultType")
        result: Any = data.get("result")  # JSON: a missing or malformed one raises TypeError below
        try:
            if kind == "vector":
                return [float(sample["value"][1]) for sample in result]
            if kind == "scalar":
                return [float(result[1])]
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    raise QueryFailed("Prometheus answered something other than a vector or a scalar of numbers")


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        body = json.load(error)
    except (OSError, ValueError, http.client.HTTPException):
        body = None
    return str(body["error"]) if isinstance(body, dict) and "error" in body else str(error.reason)
