"""Notifications: in-app, and e-mail through SMTP, in the recipient's language."""
