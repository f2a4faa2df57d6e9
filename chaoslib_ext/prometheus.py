"""An instant query against Prometheus's HTTP API (GET /api/v1/query), for guards."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class QueryFailed(Exception):
    """Prometheus could not be asked, or did not answer with numbers."""


def instant_query(base_url: str, query: str, timeout: float) -> list[float]:
    """The values of an instant query: one per series of a vector, or the scalar's one."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # Prometheus explains a bad query in the body
        try:
            reason = json.load(error).get("error", error.reason)
        except ValueError:
            reason = error.reason
        raise QueryFailed(f"Prometheus refused the query: {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise QueryFailed(
            f"cannot query Prometheus at {base_url}: {getattr(error, 'reason', error)}"
        ) from None
    data = body.get("data", {}) if isinstance(body, dict) else {}
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector":
            return [float(sample["value"][1]) for sample in result]
        if kind == "scalar":
            return [float(result[1])]
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    raise QueryFailed(f"Prometheus answered {kind or 'nothing'} where numbers were expected")
