"""Email: templates and personalization, message building, tracking, unsubscribe and consent,
SMTP delivery through the outbox, the built-in sink, and inbound bounces, complaints and replies.

See docs/email.md. `flowbuilder.mail.runtime.start_runtime` runs the tick, the sender and the sink
inside another program's event loop or thread.
"""
