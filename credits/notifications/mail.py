"""Mailers: SMTP in production, a local Maildir in the embedded profile.

A mailer sends one :class:`email.message.EmailMessage` or raises; the sender
records the error on the outbox row and tries again later.
"""

from __future__ import annotations

import mailbox
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from credits.db import utcnow
from credits.settings import Profile, Settings, SettingsError

SMTP_TIMEOUT_SECONDS = 30.0


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Delivers ``message`` or raises."""


class SmtpMailer:
    """Sends each message over its own SMTP connection, with STARTTLS when asked.

    One connection per message keeps a dropped connection to one failed row.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        # Not ``with smtplib.SMTP(...)``: its exit raises when QUIT is refused (421) or
        # times out, after the server has already accepted the message, and the
        # sender would then send it again.
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(message)
        finally:
            _hang_up(smtp)


def _hang_up(smtp: smtplib.SMTP) -> None:
    """Says QUIT and closes the connection, ignoring any error: once ``send_message``
    returned, the server has taken the message, and nothing said after changes that."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


class MaildirMailer:
    """Delivers into a Maildir folder (``new/``), readable by any mail client."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.path, create=True).add(message)


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when ``smtp_host`` is set; a Maildir under var/ otherwise (embedded only).

    Raises SettingsError in production without an SMTP host.
    """
    if settings.smtp_host:
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
        )
    if settings.profile is Profile.PRODUCTION:
        raise SettingsError("CREDITS_SMTP_HOST is required to send mail in production")
    return MaildirMailer(settings.maildir)


def build_message(
    *, sender: str, recipient: str, subject: str, body: str, message_key: str
) -> EmailMessage:
    """A plain-text message; its Message-ID is stable per outbox row, so a
    message delivered twice (at least once) can be recognised by the receiver."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{message_key}@{domain}>"
    message.set_content(body)
    return message
