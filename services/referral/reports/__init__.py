"""Activity reports per agreement and period, computed from the usage ledger."""
