"""Failure notices of the batch layer: a log line always, an e-mail when SMTP is configured.

A failed batch run changes nothing that is served, so the only harm is staleness; the
operator learns of it from the log and, with ``batch.smtp_host`` and ``batch.notify_to``
set, from a mail naming the view, the run and the error.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from lambdalab.settings import Settings

log = logging.getLogger(__name__)


def notify_failure(settings: Settings, subject: str, body: str) -> bool:
    """Log a batch failure and mail it; return whether a mail was sent.

    A mail that cannot be delivered is logged, never raised: notification must not hide
    the original failure.
    """
    log.error("batch failure [%s]: %s\n%s", settings.namespace, subject, body)
    cfg = settings.batch
    if not cfg.smtp_host or not cfg.notify_to:
        return False
    msg = EmailMessage()
    msg["Subject"] = f"[lambdalab {settings.namespace}] {subject}"
    msg["From"] = cfg.notify_from
    msg["To"] = ", ".join(cfg.notify_to)
    msg.set_content(body)
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("could not mail the failure to %s: %s", cfg.notify_to, exc)
        return False
    return True
