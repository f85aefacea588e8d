"""The console's warning on a rule whose sender is not an allowed sender of its location
(docs/semantics.md §7): the rule is saved, but its messages go out from the service's own
address or number, which the operator should know before they are sent."""

from __future__ import annotations

from typing import Any

from calnotify.channels.senders import AllowedSenders, allowed_senders
from calnotify.db.tx import Reader


async def allowed_of(reader: Reader, location_id: str) -> AllowedSenders:
    """The allowed senders of one location."""
    return (await allowed_senders(reader, [location_id]))[location_id]


def sender_warning(
    location_id: str, channel: str, from_address: str, from_number: str, allowed: AllowedSenders
) -> str:
    """One plain sentence when the sender the rule names for its channel is not allowed;
    "" when it is, or when the rule names none."""
    address, number = from_address.strip(), from_number.strip()
    if channel == "email" and address and not allowed.allows_email(address):
        return (
            f"From address {address} is not an allowed sender of this location: its emails "
            f"go out from the service's own address, with {address} as Reply-To. To send "
            f"from it, an operator runs `calnotify senders add --location {location_id} "
            f"--email {address}`."
        )
    if channel in ("sms", "whatsapp") and number and not allowed.allows_number(number):
        return (
            f"From number {number} is not an allowed sender of this location: its messages "
            f"go out from the service's own number. To send from it, an operator runs "
            f"`calnotify senders add --location {location_id} --number {number}`."
        )
    return ""


def rule_warnings(location_id: str, rules: list[Any], allowed: AllowedSenders) -> dict[str, str]:
    """The warning of each rule that has one, by rule id."""
    found = {
        rule.id: sender_warning(
            location_id, rule.channel, rule.from_address, rule.from_number, allowed
        )
        for rule in rules
    }
    return {rule_id: text for rule_id, text in found.items() if text}
