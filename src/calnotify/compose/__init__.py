"""Composing a message: a draft of plain data (:mod:`.draft`), made into the message that is
sent (:mod:`.compose`) in a render process (:mod:`.pool`)."""
