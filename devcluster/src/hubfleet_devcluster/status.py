"""Errors as the API answers them: a Kubernetes ``Status`` object with kube-apiserver's code, reason and message."""

from __future__ import annotations

import datetime

from hubfleet.errors import HubfleetError
from .resources import RESOURCES


class APIError(HubfleetError):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": self.code,
                "reason": self.reason, "message": self.message, "details": self.details}


def not_found(plural: str, name: str) -> APIError:
    r = RESOURCES.get(plural)
    details = {"name": name, "kind": plural}
    if r is not None and r.group:
        details["group"] = r.group
    what = f"{plural}.{r.group}" if r is not None and r.group else plural
    return APIError(404, "NotFound", f'{what} "{name}" not found', details)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
