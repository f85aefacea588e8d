"""Replies by SMS and WhatsApp (docs/semantics.md §8, "Replies"): what a reply says
(:mod:`.keywords`), who and which appointment it is about (:mod:`.lookup`) and what it does
(:mod:`.service`)."""
