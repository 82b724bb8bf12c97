"""Fault knobs for tests (`/devcluster/faults`): a fraction of resource requests answers an error, or answers late;
what a cluster autoscaler would say about an unschedulable pod (``autoscaler``); images whose pulls fail as "not
found" (``missing_images``, glob patterns)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .status import APIError

AUTOSCALER_MODES = ("", "scale-up", "no-scale-up")


@dataclass
class Faults:
    """Fault knobs for tests: a fraction of resource requests answers an error, or answers slowly."""
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (429, 500)
    delay_rate: float = 0.0
    delay: float = 0.0
    seed: int | None = None
    # "" (no cluster autoscaler), "scale-up" (a TriggeredScaleUp event beside each FailedScheduling) or
    # "no-scale-up" (NotTriggerScaleUp): the events cluster-autoscaler records; no node is added
    autoscaler: str = ""
    # glob patterns of images the registry does not have: pulls fail with ErrImagePull even when a mapping matches
    missing_images: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def update(self, data: dict) -> None:
        """Validate every value first, then apply them all (a bad request changes nothing)."""
        known = ("error_rate", "error_codes", "delay_rate", "delay", "seed", "autoscaler", "missing_images")
        if not isinstance(data, dict):
            raise APIError(400, "BadRequest", f"faults: expected a JSON object with some of {', '.join(known)}, "
                           f"got {data!r}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise APIError(400, "BadRequest", f"faults: unknown field(s) {unknown}; allowed: {', '.join(known)}")
        new: dict[str, Any] = {}
        for key in ("error_rate", "delay_rate", "delay"):
            if key in data:
                try:
                    value = float(data[key])
                except (TypeError, ValueError) as e:
                    raise APIError(400, "BadRequest", f"faults.{key}: {data[key]!r} is not a number") from e
                if not 0 <= value <= (1 if key.endswith("rate") else float("inf")):
                    raise APIError(400, "BadRequest", f"faults.{key}: {value} out of range"
                                   + (" (0 to 1)" if key.endswith("rate") else " (must be >= 0)"))
                new[key] = value
        if "error_codes" in data:
            try:
                codes = tuple(int(c) for c in data["error_codes"])
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"faults.error_codes: {data['error_codes']!r} is not a list of "
                               "HTTP status codes") from e
            if not codes or any(c not in (429, 500, 503, 504) for c in codes):
                raise APIError(400, "BadRequest", f"faults.error_codes: {codes} must be among 429, 500, 503, 504")
            new["error_codes"] = codes
        if data.get("seed") is not None:
            try:
                new["seed"] = int(data["seed"])
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"faults.seed: {data['seed']!r} is not an integer") from e
        if "autoscaler" in data:
            if data["autoscaler"] not in AUTOSCALER_MODES:
                raise APIError(400, "BadRequest", f"faults.autoscaler: {data['autoscaler']!r} must be one of "
                               + ", ".join(repr(m) for m in AUTOSCALER_MODES))
            new["autoscaler"] = data["autoscaler"]
        if "missing_images" in data:
            patterns = data["missing_images"]
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise APIError(400, "BadRequest", f"faults.missing_images: {patterns!r} must be a list of image "
                               "glob patterns such as [\"quay.io/jupyter/*:no-such-tag\"]")
            new["missing_images"] = tuple(patterns)
        for key, value in new.items():
            setattr(self, key, value)
        if "seed" in new:
            self.rng.seed(self.seed)

    def as_dict(self) -> dict:
        return {"error_rate": self.error_rate, "error_codes": list(self.error_codes), "delay_rate": self.delay_rate,
                "delay": self.delay, "seed": self.seed, "autoscaler": self.autoscaler,
                "missing_images": list(self.missing_images)}
