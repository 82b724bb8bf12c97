"""Telling a user that their queued request was admitted, by the notifiers the culler uses (:mod:`hubfleet.notify`:
SMTP mail, a webhook, a hook), configured in the hub's config (``c.SMTPNotifier.host``, ``c.WebhookNotifier.url``,
``c.HookNotifier.hook``; none configured: only the spawn page tells).

Every notification runs in the background after the admission: a failed or slow one is logged
(``queue: notifying <user> of the admission to '<profile>' by <notifier> failed: ...``) and never delays or undoes
the admission. Mail goes out on a thread, bounded by ``SMTPNotifier.timeout``; the webhook by
``WebhookNotifier.timeout``. The address comes from the user's auth state (``SMTPNotifier.to_auth_state``, read in
the hub process) or the ``to`` template, as for the culler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from ..notify import NOTIFIER_CLASSES, NotifyError, check_hook

log = logging.getLogger("hubfleet.queue")


@dataclass(frozen=True)
class AdmissionNotice:
    """A queued request admitted: its server is started for the user (``start_by`` "") or waits for the user to
    start it before ``start_by`` (ISO 8601 UTC)."""

    user: str
    server: str          # "" for the default server
    profile: str         # the profile's slug
    profile_name: str    # its display name
    start_by: str        # ISO 8601 UTC; "" when the server is started for the user
    url: str             # where to start it or follow it (the hub's spawn page)
    event: str = "queue_admitted"

    @property
    def subject(self) -> str:
        return "Your JupyterHub server is ready to start" if self.start_by else "Your JupyterHub server is starting"

    def text(self) -> str:
        which = f"your server {self.server!r}" if self.server else "your server"
        if self.start_by:
            return (f"A '{self.profile_name}' slot is free: {which} is ready to start. Start it by {self.start_by} "
                    f"UTC at {self.url}; after that the slot passes to the next in line.\n")
        return f"A '{self.profile_name}' slot is free: {which} is starting. Follow it at {self.url}.\n"


def admission_notice(*, user: str, server: str, profile, start_by: float | None, url: str) -> AdmissionNotice:
    when = datetime.fromtimestamp(start_by, timezone.utc).strftime("%Y-%m-%d %H:%M") if start_by else ""
    return AdmissionNotice(user, server, profile.slug, profile.display_name, when, url)


def enabled_notifiers(parent) -> list:
    """The notifiers configured in `parent`'s config (a hook whose import string does not import is an error)."""
    notifiers = [cls(parent=parent) for cls in NOTIFIER_CLASSES]
    for n in notifiers:
        if n.name == "hook":
            check_hook(n)
    return [n for n in notifiers if n.enabled]


async def notify_admission(notifiers, notice: AdmissionNotice, user_model: dict, *, log=log) -> int:
    """Deliver `notice` by each notifier; how many delivered. Failures are logged (to `log`), never raised."""
    delivered = 0
    for notifier in notifiers:
        try:
            await notifier.notify(notice, user_model)
        except NotifyError as e:
            log.warning("queue: notifying %s of the admission to %r by %s failed: %s", notice.user, notice.profile,
                        notifier.name, e)
        except Exception as e:  # noqa: BLE001  (a notification never breaks an admission)
            log.warning("queue: notifying %s of the admission to %r by %s failed: %s: %s", notice.user,
                        notice.profile, notifier.name, type(e).__name__, e)
        else:
            delivered += 1
            log.info("queue: told %s of the admission to %r by %s", notice.user, notice.profile, notifier.name)
    return delivered


__all__ = ["AdmissionNotice", "admission_notice", "enabled_notifiers", "notify_admission"]
