"""ORM tables, one module per table. Importing this package registers all of them."""

from calnotify.models.appointment import Appointment, AppointmentEvent
from calnotify.models.calendar import Calendar
from calnotify.models.console_session import ConsoleSession
from calnotify.models.contact import Contact
from calnotify.models.delivery import Delivery, DeliveryAttempt, InboxItem, OutboxMessage
from calnotify.models.inbound import InboundMessage
from calnotify.models.link_secret import LinkSecret
from calnotify.models.location import Location
from calnotify.models.notification import Notification
from calnotify.models.planning_job import PlanningJob
from calnotify.models.process import ServiceProcess
from calnotify.models.sender import AllowedSender
from calnotify.models.template import Template
from calnotify.models.token import ApiToken
from calnotify.models.user import User
from calnotify.models.webhook import WebhookEndpoint

__all__ = [
    "AllowedSender",
    "ApiToken",
    "Appointment",
    "AppointmentEvent",
    "Calendar",
    "ConsoleSession",
    "Contact",
    "Delivery",
    "DeliveryAttempt",
    "InboundMessage",
    "InboxItem",
    "LinkSecret",
    "Location",
    "Notification",
    "OutboxMessage",
    "PlanningJob",
    "ServiceProcess",
    "Template",
    "User",
    "WebhookEndpoint",
]
