"""The deliveries table as the lifecycle's statements name it."""

from __future__ import annotations

from calnotify.db.statements import table
from calnotify.deliveries.states import DeliveryStatus
from calnotify.models import Delivery

SENDING = DeliveryStatus.SENDING.value
SCHEDULED = DeliveryStatus.SCHEDULED.value
TABLE = table(Delivery)
D = TABLE.c
