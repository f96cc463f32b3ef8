"""Import every module that declares tables, so `Base.metadata` is the whole schema."""

# ruff: noqa: F401 - these imports register tables
import services.imaging.forwarding.models
import services.imaging.pickup.models
import services.imaging.reports.models
import services.imaging.shares.models
import services.referral.missions.models
import services.referral.referrals.models
import services.teleconsult.sessions.models
import shared.audit
import shared.identity.models
import shared.notifications.models
import shared.registry.models
from shared.db import Base

metadata = Base.metadata
