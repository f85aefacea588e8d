"""Composing a message from its draft: render, invitation, the adapter's wire form.

:func:`compose` is the one function that makes a message: the dispatcher's messages and the
plan preview's are made by it alike (the preview only leaves out the hand-over), in a render
process (:mod:`calnotify.compose.pool`).
"""

from __future__ import annotations

from dataclasses import fields

from calnotify.channels.base import Attachment, Message
from calnotify.channels.ics import invitation
from calnotify.compose.draft import Draft
from calnotify.templates.render import render


def compose(draft: Draft) -> Message:
    """The message of ``draft``. Raises :class:`~calnotify.templates.errors.RenderError`
    when a template cannot be rendered."""
    rendered = render(draft.subject_source, draft.body_source, draft.values)
    attachments: tuple[Attachment, ...] = ()
    if draft.invite is not None:
        invite = draft.invite
        attachments = (invitation(**{f.name: getattr(invite, f.name) for f in fields(invite)}),)
    sender = draft.sender
    message = Message(
        delivery_id=draft.delivery_id,
        location_id=draft.location_id,
        appointment_id=draft.appointment_id,
        calendar_id=draft.calendar_id,
        notification_type=draft.notification_type,
        channel=draft.channel,
        to=draft.to,
        from_name=sender.from_name,
        from_address=sender.from_address,
        reply_to=sender.reply_to,
        from_number=sender.from_number,
        appointment_version=draft.appointment_version,
        attachments=attachments,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        user_id=draft.user_id,
    )
    return message if draft.wire is None else draft.wire(message)
