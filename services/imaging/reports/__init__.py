"""Radiologist reports on a share: findings and impression, signed by a radiologist of the provider.

One report per share. Signing it queues `referrals.record_imaging_report_task`
(by name, after the commit), which puts the report on the referral's timeline
and tells the referring physician: the loop closes without this service
importing the referral service.
"""
