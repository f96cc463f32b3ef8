"""Shares: a de-identified copy of one study, made for the provider of one referral.

`service.share` decides (imaging_review), de-identifies every instance under the
coverage line's data terms, passes each through the leak gate and only then puts
the copies in the shared store; `repository.visible_study_uids` (and
`may_read_study`, for one of them) is what the partner-facing DICOMweb
(`services.imaging.dicomweb`) serves, and nothing else.
"""
