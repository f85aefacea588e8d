"""A location is told what went wrong with its message, never the deployment's details
(docs/semantics.md §9); an operator sees every word."""

from __future__ import annotations

import pytest

from calnotify.deliveries.wording import neutral, shown_error

REACHING = [
    "Error connecting to 127.0.0.1 on port 2525: [Errno 111] Connection refused",
    "timed out after 15 s talking to smtp.internal.example",
    "no answer within 4 s (the provider may have acted on it)",
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
    "535 5.7.8 Authentication credentials invalid",
    "[Errno -2] Name or service not known",
]
ABOUT_THE_MESSAGE = [
    "550 5.1.1 User unknown",
    "452 4.2.2 Mailbox full",
    "429 Too Many Requests",
    "21211: The 'To' number +1555 is not a valid phone number.",
    "the template cannot be rendered: unknown tag 'fi'",
]


@pytest.mark.parametrize("text", REACHING)
def test_errors_about_reaching_the_provider_are_worded_for_the_location(text: str) -> None:
    shown = shown_error("email", text)
    assert shown.startswith(neutral("email"))
    assert "127.0.0.1" not in shown and "Errno" not in shown and "535" not in shown
    assert shown.endswith("(the provider may have acted on it)") == text.endswith(
        "(the provider may have acted on it)"
    )
    assert shown_error("email", text, operator=True) == text


@pytest.mark.parametrize("text", ABOUT_THE_MESSAGE)
def test_the_providers_answer_about_the_message_is_shown(text: str) -> None:
    assert shown_error("sms", text) == text


def test_each_channel_names_its_provider() -> None:
    assert shown_error("sms", "connection reset by peer").startswith("the SMS provider")
    assert shown_error("whatsapp", "connection reset by peer").startswith("the WhatsApp")
    assert shown_error("email", "") == ""
