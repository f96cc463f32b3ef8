"""Referrals: submission, routing, the triage workflow, worklists and the closed loop."""
