"""Warning notifiers: tell a user their server will be culled (SMTP mail, a webhook, or a hook callable).

The notifiers are :mod:`hubfleet.notify`'s (shared with ProfileSpawner's queue); this module adds the culler's
:class:`Notice`. The sweep logs a failed delivery as a warning and counts it: the warning still counts as given, so
the cull is not lost (it comes ``warn_before`` after the first attempt), and delivery is tried again at the next
sweep until it succeeds or the server is gone. An address from the auth state needs the ``admin:auth_state`` scope,
which :func:`hubfleet.config.culler.culler_service` adds only when ``mail_from_auth_state`` is set; a bad one is
refused for that warning (logged, counted, tried again at the next sweep) and never ends the sweep for that user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...notify import NOTIFIER_CLASSES, HookNotifier, NotifyError, SMTPNotifier, WebhookNotifier, check_hook, lookup


@dataclass(frozen=True)
class Notice:
    user: str
    server: str          # "" for the default server
    profile: str         # the policy's label, e.g. "profile gpu"
    reason: str          # why the server will be culled
    cull_after: str      # ISO 8601 UTC: the cull happens no earlier than this
    warn_before: float   # seconds
    server_url: str = ""
    why: str = "idle"    # idle, gpu_idle, max_age, budget, consolidate (the metrics' reason words)

    subject: ClassVar[str] = "Your JupyterHub server will be stopped soon"

    def text(self) -> str:
        which = f"Your server {self.server!r}" if self.server else "Your server"
        minutes = max(1, round(self.warn_before / 60))
        keep = (f"To keep it, use it now (open {self.server_url or 'it'} and work in it): activity cancels the stop."
                if self.why != "budget" else "It is kept if enough of the budget frees up before then.")
        return (f"{which} on JupyterHub will be stopped in about {minutes} minute(s) (not before {self.cull_after} "
                f"UTC): {self.reason}.\n{keep} Save your work; files in your home directory are kept.\n")


__all__ = ["Notice", "NotifyError", "SMTPNotifier", "WebhookNotifier", "HookNotifier", "NOTIFIER_CLASSES",
           "check_hook", "lookup"]
