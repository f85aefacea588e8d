"""Outbound webhooks (docs/semantics.md §8, "Outbound webhooks"): a location's endpoints,
the events written for them with the change that caused them, and the ``webhook`` channel
that POSTs them signed per Standard Webhooks. (Inbound webhooks, Twilio's, are
:mod:`calnotify.webhooks`.)"""
