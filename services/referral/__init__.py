"""The referral service: cases, routing, triage, missions, reports, and agreement administration."""
