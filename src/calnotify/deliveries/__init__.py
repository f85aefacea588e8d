"""calnotify's own API over what was planned and sent: deliveries and the outbox."""
